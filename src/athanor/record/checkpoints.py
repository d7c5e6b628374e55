"""Checkpoints: atomic writes, last/best/periodic policy, loading with fallback, disk checks.

Every save writes one new file ``step_<step>.pt`` (temp file in the same folder, rename), then
points ``last.pt`` at it with an atomic hard link. When the monitored metric improved, ``best.pt``
is the model (and EMA) weights only (``checkpoint.best_weights_only``, the default: resume always
uses last.pt, so best.pt needs no optimizer state), or another hard link to the step file. A
process killed mid-save leaves the previous files untouched. Training does not wait for the disk:
a thread then fsyncs the new files and only after that prunes the older periodic files down to
the ``keep_steps`` newest, so a power loss before the fsync still finds the previous file (a torn
newest file is skipped on load). The next save, and the end of the process, wait for it. Loading
tries ``last.pt`` first and falls back, with a warning, to the newest older file that loads.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

from athanor.config.settings import CheckpointSettings
from athanor.errors import CheckpointSaveError, ConfigError, short_reason
from athanor.record import shards

log = logging.getLogger(__name__)

# 2: the train state's parts under "state" (engine/state.py); 1 had them at the top level
FORMAT_VERSION = 2
REQUIRED_KEYS = ("format_version", "config", "state")
# a weights-only best.pt: its "state" holds these parts only, and WEIGHTS_ONLY_KEY is True
WEIGHTS_PARTS = ("progress", "model", "ema", "task")  # task: e.g. target statistics
WEIGHTS_ONLY_KEY = "weights_only"


def is_weights_only(checkpoint: dict[str, Any]) -> bool:
    """A best.pt written with checkpoint.best_weights_only: evaluable, not resumable."""
    return bool(checkpoint.get(WEIGHTS_ONLY_KEY, False))


def weights_of(checkpoint: dict[str, Any], model: dict[str, Any] | None = None) -> dict[str, Any]:
    """The weights-only form of a training checkpoint (shares its tensors: nothing is copied).
    ``model``: the consolidated weights of a sharded checkpoint (record/shards.py)."""
    parts = {k: v for k, v in checkpoint["state"].items() if k in WEIGHTS_PARTS}
    if model is not None:
        parts["model"] = model
    return {**checkpoint, "state": parts, WEIGHTS_ONLY_KEY: True}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_atomic(state: dict[str, Any], path: Path, *, durable: bool = True) -> None:
    """torch.save through a temp file in the same folder: the rename is the commit point.
    ``durable``: fsync the file before the rename (False: the caller syncs it later)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_atomic(target: Path, link: Path) -> None:
    """Make ``link`` another name of ``target`` (hard link, or a copy where links fail)."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(target, tmp)
    except OSError:
        shutil.copyfile(target, tmp)
    os.replace(tmp, link)


def _loader_reason(err: Exception) -> str:
    """What torch.load's error says went wrong: torch wraps the weights-only unpickler's reason
    in paragraphs of advice, after "WeightsUnpickler error:"."""
    _, unpickler, reason = str(err).partition("WeightsUnpickler error:")
    return short_reason(reason if unpickler else str(err)) or "unreadable"


def load_file(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """Load one checkpoint (weights only: plain tensors and Python data), or raise ConfigError.
    A weights-only best.pt (checkpoint.best_weights_only) is refused: resume uses last.pt."""
    if not path.is_file():
        raise ConfigError(f"Checkpoint {path} does not exist (or is not a file).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # truncated, corrupt, or not a torch file at all
        raise ConfigError(
            f"{path} is damaged or not a torch checkpoint "
            f"({type(err).__name__}: {_loader_reason(err)})."
        ) from err
    version = state.get("format_version") if isinstance(state, dict) else None
    if isinstance(version, int) and version < FORMAT_VERSION:
        raise ConfigError(
            f"{path} is a checkpoint of format {version}, written by an older athanor; this one "
            f"resumes format {FORMAT_VERSION} only. Its weights still load: start a new run with "
            f"model.weights={path}."
        )
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise ConfigError(
            f"{path} loads, but is not an athanor training checkpoint (it lacks the keys "
            f"{', '.join(REQUIRED_KEYS)}). A plain state_dict can be used as model weights, "
            "not resumed."
        )
    if state["format_version"] > FORMAT_VERSION:
        raise ConfigError(
            f"{path} has checkpoint format {state['format_version']}, newer than this athanor "
            f"understands ({FORMAT_VERSION}); upgrade athanor to resume it."
        )
    return shards.locate(state, path.parent)


def saved_progress(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Epoch, step and batch of a loaded checkpoint (the train state's ``progress`` part)."""
    return checkpoint["state"]["progress"]


def saved_step(checkpoint: dict[str, Any]) -> int:
    return int(saved_progress(checkpoint)["step"])


def _inode(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def candidates(folder: Path) -> list[Path]:
    """Checkpoints of a folder, newest first: step_*.pt by step, then last.pt / best.pt when
    they are not hard links to one of those (a copy where links failed; an old best.pt).

    The step files decide, not last.pt: a process killed between writing step_N.pt and
    re-linking last.pt leaves step_N.pt as the newest complete file."""
    steps = sorted(folder.glob("step_*.pt"), reverse=True)
    linked = {_inode(p) for p in steps}
    named = [folder / "last.pt", folder / "best.pt"]
    return steps + [p for p in named if p.is_file() and _inode(p) not in linked]


def load_latest(folder: Path, *, mmap: bool = False) -> tuple[dict[str, Any], Path] | None:
    """The newest checkpoint of ``folder`` that loads; damaged ones are skipped with a warning.
    None when the folder holds no checkpoint file at all; ConfigError when none loads."""
    paths = candidates(folder)
    problems = []
    for path in paths:
        try:
            state = load_file(path, mmap=mmap)
        except ConfigError as err:
            problems.append(str(err))
            log.warning("%s Trying the previous checkpoint.", err)
            continue
        if is_weights_only(state):
            continue  # a weights-only best.pt is no point to resume from
        if problems:
            log.warning(
                "Using %s (step %d) instead of the damaged newer file.", path, saved_step(state)
            )
        return state, path
    if not problems:
        return None  # no file at all, or weights-only files only
    raise ConfigError(
        f"No checkpoint in {folder} can be loaded: {' '.join(problems)} Nothing was changed; "
        "start a fresh run or point resume= at a good .pt file."
    )


def state_bytes(*modules: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for m in modules for t in m.state_dict().values())


def check_disk(folder: Path, checkpoint_bytes: int, copies: int) -> None:
    """Refuse an unwritable run folder; warn when ``copies`` checkpoints would not fit."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ConfigError(
            f"The checkpoint folder {folder} is not writable ({err.strerror or err}); choose "
            "another hydra.run.dir or fix its permissions."
        ) from err
    free = shutil.disk_usage(folder).free
    need = checkpoint_bytes * copies
    if free < need:
        log.warning(
            "Only %.1f MB free in %s, but %d checkpoints of ~%.1f MB need %.1f MB: saves may fail "
            "(checkpoint.on_error decides whether training then stops).",
            free / 2**20,
            folder,
            copies,
            checkpoint_bytes / 2**20,
            need / 2**20,
        )


class Checkpointer:
    """Writes the checkpoints of one run (``active``: the main process, checkpoints enabled).
    Whether a save is the best so far is the caller's verdict (the run record's monitor)."""

    def __init__(self, folder: Path, settings: CheckpointSettings, *, active: bool = True):
        self.folder, self.settings, self.active = folder, settings, active and settings.enabled
        self._syncing: threading.Thread | None = None  # fsync + prune of the newest save
        if self.active:
            for stale in folder.glob(".*.tmp"):  # left by a process killed mid-save
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
            shards.remove_unnamed(folder)

    def save(
        self,
        checkpoint: dict[str, Any],
        *,
        step: int,
        best: bool = False,
        weights: dict[str, Any] | None = None,
    ) -> Path | None:
        """Write ``step_<step>.pt``; update last.pt (and best.pt when ``best``); prune old
        periodic files (after they are on disk, in a thread). ``weights``: a sharded run's
        consolidated model weights, for best.pt (always weights-only then: the step file's
        shards are pruned)."""
        if not self.active:
            return None
        checkpoint = {**checkpoint, "format_version": FORMAT_VERSION}
        path = self.folder / f"step_{step:09d}.pt"
        self.wait()  # one file in flight: the previous save is on disk before this one starts
        try:
            save_atomic(checkpoint, path, durable=False)
            if self.settings.save_last:
                _link_atomic(path, self.folder / "last.pt")
            written = [path]
            if best and (self.settings.best_weights_only or weights is not None):
                written.append(self.folder / "best.pt")
                save_atomic(weights_of(checkpoint, weights), written[-1], durable=False)
            elif best:
                _link_atomic(path, self.folder / "best.pt")
        except (OSError, RuntimeError) as err:
            reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
            message = (
                f"Saving checkpoint {path.name} in {self.folder} failed ({reason}); the earlier "
                "checkpoints are intact."
            )
            if self.settings.on_error == "warn":
                log.warning("%s Training continues (checkpoint.on_error=warn).", message)
                return None
            raise CheckpointSaveError(
                message + " Training stops (checkpoint.on_error=stop; set checkpoint.on_error=warn "
                "to continue without it)."
            ) from err
        # not a daemon: the interpreter waits for it at exit, so a finished run is on disk
        self._syncing = threading.Thread(target=self._sync_then_prune, args=(written,))
        self._syncing.start()
        return path

    def save_consolidated(self, checkpoint: dict[str, Any], weights: dict[str, Any]) -> Path | None:
        """``model.pt``: a sharded run's final weights as plain tensors, in the weights-only
        form of best.pt (evaluate, export and model.weights read it without a process group)."""
        if not self.active:
            return None
        path = self.folder / "model.pt"
        save_atomic(weights_of({**checkpoint, "format_version": FORMAT_VERSION}, weights), path)
        return path

    def wait(self) -> None:
        """Until the newest checkpoint is on disk and the old ones are pruned."""
        if self._syncing is not None:
            self._syncing.join()
            self._syncing = None

    def _sync_then_prune(self, paths: list[Path]) -> None:
        try:
            for path in paths:
                _fsync_file(path)
            _fsync_dir(self.folder)
        except OSError as err:  # the file is written; only its durability is in doubt
            log.warning("Could not flush checkpoint %s to disk (%s).", paths[0].name, err)
            return  # keep the older files: they may be the only ones on disk
        self._prune()

    def _prune(self) -> None:
        """Keep the ``keep_steps`` newest step files (at least the newest: last.pt's data)."""
        periodic = sorted(self.folder.glob("step_*.pt"))
        for old in periodic[: max(0, len(periodic) - max(1, self.settings.keep_steps))]:
            old.unlink(missing_ok=True)  # last.pt / best.pt are hard links: their data stays
            shutil.rmtree(old.with_suffix(shards.SUFFIX), ignore_errors=True)


def checkpoint_bytes(folder: Path) -> int:
    """What the checkpoint files of ``folder`` take on disk (a file under several hard-linked
    names counted once)."""
    if not folder.is_dir():
        return 0
    seen: dict[tuple[int, int], int] = {}
    for path in folder.glob("*.pt"):
        st = path.stat()
        seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values()) + sum(
        shards.folder_bytes(f) for f in folder.glob(f"step_*{shards.SUFFIX}")
    )
