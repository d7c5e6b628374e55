"""The sweep manifest: ``<sweep dir>/sweep_manifest.json``, one entry per job.

A job is "the same" by its overrides (sorted, so their order does not matter). The entry keeps
the job's folder and how it ended, so starting the same sweep again into the same folder skips
what completed, resumes what was interrupted (in the same folder) and reruns what failed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from athanor.record.folder import RunDir, write_json_atomic

MANIFEST = "sweep_manifest.json"
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
            data = json.loads(self.path.read_text())
            self.entries = {k: Entry(**e) for k, e in data.get("jobs", {}).items()}

    def get(self, overrides: list[str]) -> Entry | None:
        return self.entries.get(job_key(overrides))

    def put(self, entry: Entry) -> None:
        self.entries[job_key(entry.overrides)] = entry
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        jobs = {k: asdict(e) for k, e in self.entries.items()}
        write_json_atomic(self.path, {"jobs": jobs})


def finished(entry: Entry) -> bool:
    """Completed, and its run folder still says so: the job is skipped on a restart."""
    if entry.status != COMPLETED:
        return False
    summary: dict[str, Any] = RunDir(Path(entry.folder)).read_summary()
    return summary.get("status") == COMPLETED
