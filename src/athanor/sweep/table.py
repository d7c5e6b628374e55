"""The end-of-sweep table: every job of the sweep with its status, folder and (failed) reason."""

from __future__ import annotations

from pathlib import Path

from athanor.sweep.manifest import FAILED, INTERRUPTED, PENDING, Entry
from athanor.sweep.report import markdown


def sweep_table(entries: list[Entry], sweep_dir: Path) -> str:
    body = []
    for e in sorted(entries, key=lambda e: e.index):
        folder = Path(e.folder)
        shown = folder.relative_to(sweep_dir) if folder.is_relative_to(sweep_dir) else folder
        body.append([e.index, " ".join(e.overrides), e.status, str(shown), e.reason or ""])
    return markdown(["job", "overrides", "status", "folder", "reason"], body)


def failed_message(entries: list[Entry], sweep_dir: Path) -> str | None:
    """One paragraph naming the failed jobs, or None when none failed."""
    failed = [e for e in entries if e.status == FAILED]
    if not failed:
        return None
    named = "; ".join(
        f"job {e.index} ({' '.join(e.overrides)}): {(e.reason or '').rstrip('.')}" for e in failed
    )
    return (
        f"{len(failed)} of {len(entries)} sweep jobs failed: {named}. The other jobs went on. "
        f"Run the same command with hydra.sweep.dir={sweep_dir} to rerun the failed ones "
        "(completed jobs are skipped)."
    )


def interrupted_message(entries: list[Entry], sweep_dir: Path, signal: str) -> str:
    """What a stop signal left: the jobs it interrupted, those not started, and the way on."""
    stopped = [str(e.index) for e in entries if e.status == INTERRUPTED]
    waiting = [str(e.index) for e in entries if e.status == PENDING]
    return (
        f"Sweep stopped by {signal}: job(s) {', '.join(stopped) or 'none'} checkpointed and "
        "stopped (interrupted)"
        + (f", job(s) {', '.join(waiting)} not started" if waiting else "")
        + f". Run the same command with hydra.sweep.dir={sweep_dir} to resume them (completed "
        "jobs are skipped)."
    )
