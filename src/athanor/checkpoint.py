"""Checkpoints: atomic writes, last/best/periodic policy, and loading with fallback.

Every save writes one new file ``step_<step>.pt`` (temp file in the same folder, fsync, rename),
then points ``last.pt`` (and ``best.pt`` when the monitored metric improved) at it with an atomic
hard link. A process killed mid-save leaves the previous files untouched; only the ``keep`` newest
periodic files are kept.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from athanor.errors import ConfigError
from athanor.settings import CheckpointSettings

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class CheckpointSaveError(RuntimeError):
    pass


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """torch.save through a temp file in the same folder: the rename is the commit point."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _link_atomic(target: Path, link: Path) -> None:
    """Make ``link`` another name of ``target`` (hard link, or a copy where links fail)."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(target, tmp)
    except OSError:
        import shutil

        shutil.copyfile(target, tmp)
    os.replace(tmp, link)


def load_file(path: Path) -> dict[str, Any]:
    """Load one checkpoint (weights only: plain tensors and Python data), or raise ConfigError."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise ConfigError(f"Checkpoint {path} does not exist.") from err
    except Exception as err:  # truncated, corrupt, or not a torch file at all
        raise ConfigError(
            f"{path} is not a readable athanor checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'unreadable'})."
        ) from err
    if not isinstance(state, dict) or "model" not in state or "format_version" not in state:
        raise ConfigError(
            f"{path} loads, but is not an athanor training checkpoint (no 'model'/'format_version' "
            "keys). For plain weights use model.weights=<file> instead."
        )
    return state


def candidates(folder: Path) -> list[Path]:
    """Checkpoints of a run folder, newest first: last.pt, then periodic files by step."""
    periodic = sorted(folder.glob("step_*.pt"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    last = folder / "last.pt"
    return ([last] if last.exists() else []) + periodic


def load_latest(folder: Path) -> tuple[dict[str, Any], Path] | None:
    """The newest checkpoint that loads; damaged ones are skipped with a warning."""
    for path in candidates(folder):
        try:
            return load_file(path), path
        except ConfigError as err:
            log.warning("%s Falling back to the previous checkpoint.", err)
    return None


class Checkpointer:
    def __init__(self, folder: Path, settings: CheckpointSettings, *, active: bool = True):
        self.folder, self.settings, self.active = folder, settings, active and settings.enabled
        self.best: float | None = None

    def improved(self, value: float | None) -> bool:
        if value is None:
            return False
        if self.best is None:
            return True
        return value > self.best if self.settings.mode == "max" else value < self.best

    def save(
        self, state: dict[str, Any], *, metrics: dict[str, float] | None = None
    ) -> Path | None:
        """Write a checkpoint; update last.pt / best.pt; prune old periodic files."""
        value = (metrics or {}).get(self.settings.monitor)
        is_best = self.improved(value)
        if is_best:
            self.best = value
        if not self.active:
            return None
        state = {**state, "format_version": FORMAT_VERSION, "best_metric": self.best}
        path = self.folder / f"step_{state['step']:09d}.pt"
        try:
            save_atomic(state, path)
            if self.settings.save_last:
                _link_atomic(path, self.folder / "last.pt")
            if is_best:
                _link_atomic(path, self.folder / "best.pt")
        except OSError as err:
            message = (
                f"Saving checkpoint {path} failed ({err.strerror or err}); earlier checkpoints are "
                "intact."
            )
            if self.settings.on_error == "warn":
                log.warning("%s Training continues (checkpoint.on_error=warn).", message)
                return None
            raise CheckpointSaveError(message + " Stopping (checkpoint.on_error=stop).") from err
        self._prune()
        return path

    def _prune(self) -> None:
        periodic = sorted(self.folder.glob("step_*.pt"))
        for old in periodic[: max(0, len(periodic) - max(1, self.settings.keep))]:
            old.unlink(missing_ok=True)  # last.pt / best.pt are hard links: their data stays
