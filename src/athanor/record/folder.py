"""The run folder's anatomy: every path of a run folder is named here, and only here.

<run>/.lock              the writing process (pid, host, start time, command; record/lock.py)
<run>/.hydra/            Hydra's composed config (config.yaml), hydra.yaml, overrides.yaml
<run>/.hydra/resume-*/   the same, for each resume of the run
<run>/train.log          the log (Hydra's file handler)
<run>/tb/                TensorBoard events
<run>/checkpoints/       last.pt, best.pt, periodic step_*.pt (record/checkpoints.py)
<run>/trackers.json      MLflow / W&B run ids (a resume reopens them), the sweep's keys
<run>/wandb/             W&B's files (logger.trackers with wandb)
<run>/plots/             curves.png, confusion_val.png (at the end of the run)
<run>/metrics.jsonl      one JSON object per evaluation      } written by record/record.py's
<run>/summary.json       status, best/final, timing, model,   } RunRecord, and nobody else
                         environment, rerun, resumes          }
<run>/config.yaml        the resolved config the run trained with } what a re-run needs,
<run>/uncommitted.patch  git diff HEAD of athanor's code (bounded) } named in summary.json's
<run>/data_fingerprint.json  the data's files / tensors hashed    } `rerun` (RunRecord.attach)
<run>/provenance.yaml    where each config value came from (cli/config_provenance.py)
Every JSON file is strict JSON: NaN/Inf are written as null and named in ``nonfinite``.

A run folder belongs to one run: ``check_folder`` refuses a folder that holds another run's record
(unless the run resumes it) and the file-system faults that would stop the run later (a path that
is a file, an unwritable or read-only folder, a name too long), before anything is written;
``claim_new`` creates a new run's folder exclusively (``_1``, ``_2``, ... when taken).
"""

from __future__ import annotations

import errno
import json
import math
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from athanor.errors import ConfigError, yaml_message
from athanor.record.lock import check_free


def resume_command(run: Path | str, *overrides: str) -> str:
    """The command that continues ``run`` (a folder or .pt), ready to paste into a shell."""
    return " ".join(["train", f"resume={shlex.quote(str(run))}", *overrides])


def _fix(kind: str) -> str:
    return f"choose another folder (hydra.{kind}.dir=<folder>) or fix the folder's permissions"


def strict(value: Any, where: str = "", bad: list[str] | None = None) -> Any:
    """``value`` with NaN/Inf replaced by None; their paths are appended to ``bad``."""
    if isinstance(value, float) and not math.isfinite(value):
        if bad is not None:
            bad.append(f"{where}={value}")
        return None
    if isinstance(value, dict):
        return {k: strict(v, f"{where}.{k}" if where else str(k), bad) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v, f"{where}[{i}]", bad) for i, v in enumerate(value)]
    return value


def strict_record(record: dict[str, Any]) -> dict[str, Any]:
    """One JSON object with non-finite numbers as null and a ``nonfinite`` list naming them."""
    bad: list[str] = []
    clean = strict(record, bad=bad)
    return {**clean, "nonfinite": bad} if bad else clean


def write_json_atomic(path: Path, data: Any) -> None:
    """Write strict JSON through a temp file + rename so readers never see half a file."""
    clean = strict_record(data) if isinstance(data, dict) else data
    write_text_atomic(path, json.dumps(clean, indent=2, default=str) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` through a temp file + rename so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # e.g. a full disk: no stray temp file, and the path is named
        Path(tmp).unlink(missing_ok=True)
        err.filename = err.filename or str(path)
        raise


def read_yaml(path: Path) -> Any:
    """A YAML file a run wrote (config.yaml, .hydra/overrides.yaml), parsed; None when it is
    missing. A damaged one is a ConfigError naming the file, and the line and column."""
    import yaml

    try:
        return yaml.safe_load(path.read_bytes().decode())
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path} is damaged: byte {err.start} is not UTF-8 text. Restore it from a copy, or "
            "re-run the run it belongs to."
        ) from err
    except yaml.YAMLError as err:
        raise ConfigError(yaml_message(err, str(path))) from err


def read_yaml_or_none(path: Path) -> Any:
    """:func:`read_yaml` for a reader that goes on without the file (a report, a tracker's
    view of a sweep): None when it is missing, unreadable or damaged."""
    try:
        return read_yaml(path)
    except (OSError, ConfigError):
        return None


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tb"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def resolved_config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def patch(self) -> Path:
        return self.path / "uncommitted.patch"

    @property
    def data_fingerprint(self) -> Path:
        return self.path / "data_fingerprint.json"

    @property
    def provenance(self) -> Path:
        return self.path / "provenance.yaml"

    def read_summary(self) -> dict[str, Any]:
        try:
            summary = json.loads(self.summary.read_text())
        except (OSError, ValueError):  # missing, torn, not UTF-8: no record to read
            return {}
        return summary if isinstance(summary, dict) else {}

    def started(self) -> bool:
        """Whether a run started here (it has a record); a folder without one holds no run."""
        return self.summary.is_file()

    def discard_unstarted(self) -> bool:
        """Remove what Hydra wrote for a run that failed before it started (``.hydra/``,
        ``train.log``), and the folder when nothing else is in it. True when it is gone."""
        if not self.path.is_dir() or self.started():
            return False
        hydra_files = {".hydra", "train.log", ".lock", self.provenance.name}
        if any(p.name not in hydra_files for p in self.path.iterdir()):
            return False  # someone else's files: leave the folder alone
        shutil.rmtree(self.path / ".hydra", ignore_errors=True)
        (self.path / "train.log").unlink(missing_ok=True)
        (self.path / ".lock").unlink(missing_ok=True)
        self.provenance.unlink(missing_ok=True)
        if self.path.resolve() != Path.cwd().resolve():  # hydra.run.dir=. keeps the user's folder
            self.path.rmdir()
        return True

    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of metrics.jsonl; a line torn by a killed process, or damaged (bytes that
        are not UTF-8), is skipped."""
        if not self.metrics.exists():
            return []
        records = []
        for line in self.metrics.read_bytes().decode("utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def truncate_metrics(self, after_step: int) -> None:
        """On resume: drop records newer than the checkpoint (they will be produced again)."""
        if not self.metrics.exists():
            return
        keep = [r for r in self.read_metrics() if r.get("step", 0) <= after_step]
        tmp = self.metrics.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(strict_record(r)) + "\n" for r in keep))
        os.replace(tmp, self.metrics)


def _existing_ancestor(path: Path) -> Path:
    """``path`` or the nearest of its parents that exists."""
    path = path.absolute()
    while path != path.parent:
        try:
            path.stat()  # (exists() raises on a name too long; any error: look further up)
            return path
        except OSError:
            path = path.parent
    return path


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def fs_message(path: Path, err: OSError | None = None, kind: str = "run") -> str:
    """One sentence naming the run (or sweep: ``kind``) folder, what is wrong with it and the
    fix."""
    code = err.errno if err is not None else None
    if code == errno.ENAMETOOLONG:
        return (
            f"The {kind} folder path {path} is too long for the file system (one name at most "
            f"{_name_max(path)} bytes): use a shorter name= or hydra.{kind}.dir=."
        )
    if code in (errno.ENOTDIR, errno.EEXIST):
        where = _existing_ancestor(path)
        which = "" if where == path.absolute() else f" (its parent {where} is a file)"
        return (
            f"The {kind} folder path {path} is a file, not a folder{which}: choose another folder "
            f"(hydra.{kind}.dir=<folder>) or move the file away."
        )
    if code == errno.ENOSPC:
        return f"No space left on device for the {kind} folder {path}: free space or {_fix(kind)}."
    where = _existing_ancestor(path)
    why = "is on a read-only file system" if _read_only(where) else "is not writable"
    return f"The {kind} folder {path} cannot be written: {where} {why}; {_fix(kind)}."


def _name_max(path: Path) -> int:
    try:
        return os.pathconf(_existing_ancestor(path), "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _fs_fault(path: Path, kind: str = "run") -> str | None:
    """A file-system fault that would stop a run in ``path`` later, or None."""
    limit = _name_max(path)
    if any(len(part.encode()) > limit for part in path.parts):
        return fs_message(path, OSError(errno.ENAMETOOLONG, "name too long"), kind)
    where = _existing_ancestor(path)
    if not where.is_dir():
        return fs_message(path, OSError(errno.ENOTDIR, "not a directory"), kind)
    if not os.access(where, os.W_OK | os.X_OK):
        return fs_message(path, kind=kind)
    return None


def other_run(path: Path) -> str | None:
    """The status of the run recorded in ``path`` (summary.json or checkpoints), or None."""
    run = RunDir(path)
    checkpoints = run.checkpoints.is_dir() and any(run.checkpoints.iterdir())
    if not run.started() and not checkpoints:
        return None
    if not checkpoints and run.read_summary().get("never_started"):
        return None  # it failed while being built: the folder is free for the next try
    return str(run.read_summary().get("status", "unknown")) if run.started() else "no summary"


def check_folder(path: Path, *, resuming: bool, kind: str = "run") -> None:
    """Refuse, before anything is written, a run folder this run cannot or may not write (a
    fault, a live lock, another run's record). Raises ConfigError naming the folder and the way
    on."""
    problem = _fs_fault(path, kind)
    if problem:
        raise ConfigError(problem)
    check_free(path)  # a run in progress: name its process, not its record
    status = None if resuming else other_run(path)
    if status is not None:
        raise ConfigError(
            f"The folder {path} holds another run's record (status: {status}); a run folder "
            f"belongs to one run. Continue that run with `{resume_command(path)}`, or start this "
            "one in a new folder (leave out hydra.run.dir=, or give a new or empty folder). "
            "Nothing was written."
        )


def make_folder(path: Path, kind: str = "run") -> None:
    """Create a fixed run folder (and its parents) that :func:`check_folder` accepted; a place
    that refuses all the same (/proc, a quota, a race) is a ConfigError naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(fs_message(path, err, kind)) from None


def claim_new(path: str | Path, kind: str = "run") -> Path:
    """Create ``path`` (or ``path_1``, ``path_2``, ...) exclusively: the mkdir is the claim, so
    two runs started in the same second get two folders. Raises ConfigError on a fault."""
    base, i = Path(path), 0
    problem = _fs_fault(base, kind)
    if problem:
        raise ConfigError(problem)
    candidate = base
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            i += 1
            candidate = base.with_name(f"{base.name}_{i}")
        except OSError as err:
            raise ConfigError(fs_message(candidate, err, kind)) from None


def disk_full_message(err: OSError, path: Path) -> str:
    """What a full disk stopped, and what of the run in ``path`` was kept."""
    last = RunDir(path).checkpoints / "last.pt"
    kept = (
        f"the last good checkpoint {last} is kept"
        if last.is_file()
        else "no checkpoint had been written yet"
    )
    return (
        f"no space left on device while writing {err.filename or 'a file'} of the run {path}: "
        f"{kept}. Free some space, then continue with `{resume_command(path)}`"
        + (" (or start again)." if not last.is_file() else ".")
    )
