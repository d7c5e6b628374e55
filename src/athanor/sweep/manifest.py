"""The sweep manifest: ``<sweep dir>/sweep_manifest.json``, one entry per job.

A job is "the same" by its overrides (sorted, so their order does not matter). The entry keeps
the job's folder and how it ended, so starting the same sweep again into the same folder skips
what completed, resumes what was interrupted (in the same folder) and reruns what failed.

A manifest that cannot be read as one (truncated, or someone else's JSON) is set aside and rebuilt
from the job folders' own records: the overrides Hydra wrote to ``.hydra/overrides.yaml`` and the
status in ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from athanor.errors import ConfigError, short_reason
from athanor.record.folder import RunDir, write_json_atomic

log = logging.getLogger("athanor.sweep")

MANIFEST = "sweep_manifest.json"
# the first of the overrides the launcher puts after the job's own (cli/sweep_plugins.py job_argv)
# that Hydra writes to the job's .hydra/overrides.yaml (the hydra.* ones go elsewhere)
LAUNCHER_RESUME = "resume=auto"
# statuses a job can have in the manifest
PENDING, RUNNING, COMPLETED, FAILED, INTERRUPTED, PRUNED = (
    "pending",
    "running",
    "completed",
    "failed",
    "interrupted",
    "pruned",
)


def job_key(overrides: list[str]) -> str:
    return " ".join(sorted(overrides))


@dataclass
class Entry:
    index: int
    overrides: list[str]
    folder: str
    status: str = PENDING
    reason: str | None = None
    attempts: int = 0
    started: float | None = None  # time.time() of the last start / end, for the log
    ended: float | None = None


class Manifest:
    """Read at start, rewritten (atomically) whenever a job changes state."""

    def __init__(self, sweep_dir: Path) -> None:
        self.path = Path(sweep_dir) / MANIFEST
        self.entries: dict[str, Entry] = {}
        if self.path.exists():
            self.entries = self._read()

    def _read(self) -> dict[str, Entry]:
        try:
            jobs = json.loads(self.path.read_text())["jobs"]
            return {job_key(e["overrides"]): Entry(**e) for e in jobs.values()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            return self._rebuild(err)

    def _rebuild(self, err: Exception) -> dict[str, Entry]:
        """The damaged manifest is kept beside (``.damaged-N``); the entries come from the job
        folders, so completed jobs are still skipped and interrupted ones resumed."""
        kept = numbered_aside(self.path, "damaged")
        try:
            self.path.rename(kept)
        except OSError as cannot:
            raise ConfigError(
                f"The sweep manifest {self.path} cannot be read ({err}) nor set aside "
                f"({cannot.strerror}). Make it readable, or move it away: the sweep then rebuilds "
                "it from the job folders' own records (completed jobs are still skipped)."
            ) from None
        entries = [e for e in map(entry_from_folder, sorted(self.path.parent.iterdir())) if e]
        log.warning(
            "sweep: %s could not be read (%s: %s); it is kept as %s and the manifest was rebuilt "
            "from the %d job folder(s) with a record (%s).",
            self.path,
            type(err).__name__,
            short_reason(str(err)),
            kept.name,
            len(entries),
            ", ".join(f"job {e.index} {e.status}" for e in entries) or "none",
        )
        self.entries = {job_key(e.overrides): e for e in entries}
        self.save()  # whole again, even when no job runs this time
        return self.entries

    def get(self, overrides: list[str]) -> Entry | None:
        return self.entries.get(job_key(overrides))

    def put(self, entry: Entry) -> None:
        self.entries[job_key(entry.overrides)] = entry
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        jobs = {k: asdict(e) for k, e in self.entries.items()}
        write_json_atomic(self.path, {"jobs": jobs})


def numbered_aside(path: Path, word: str) -> Path:
    """``<path>.<word>-N``, the first N not taken: where an old file or folder is kept."""
    n = 1
    while path.with_name(f"{path.name}.{word}-{n}").exists():
        n += 1
    return path.with_name(f"{path.name}.{word}-{n}")


# a run's status in summary.json -> the job's in the manifest (running: its process is gone)
_FROM_SUMMARY = {"completed": COMPLETED, "pruned": PRUNED, "failed": FAILED}


def entry_from_folder(folder: Path) -> Entry | None:
    """A job's entry from its own folder ``<index>_<overrides>``, or None for a folder that is
    no job of the sweep's (a set-aside ``.failed-N``, a job that never started)."""
    index = re.match(r"(\d+)_", folder.name)
    run = RunDir(folder)
    if not (folder.is_dir() and index and run.started()) or ".failed-" in folder.name:
        return None
    try:
        written = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(written, list):
        return None
    written = [str(item) for item in written]
    if LAUNCHER_RESUME not in written:
        return None  # not started by the pool
    last = len(written) - 1 - written[::-1].index(LAUNCHER_RESUME)
    overrides = written[:last]
    status = _FROM_SUMMARY.get(str(run.read_summary().get("status")), INTERRUPTED)
    return Entry(int(index.group(1)), overrides, str(folder), status, attempts=1)


def finished(entry: Entry) -> bool:
    """Completed, and its run folder still says so: the job is skipped on a restart."""
    if entry.status != COMPLETED:
        return False
    summary: dict[str, Any] = RunDir(Path(entry.folder)).read_summary()
    return summary.get("status") == COMPLETED
