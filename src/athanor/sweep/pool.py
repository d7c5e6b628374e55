"""The job pool: every sweep job is its own process on its own slot, a new one starting as soon
as a slot frees. A job that fails is marked failed with its reason and frees its slot; the others
go on. Knows nothing of Hydra: a job is an argv, a folder and the overrides that name it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from athanor.record.folder import RunDir
from athanor.record.record import correct_outcome
from athanor.sweep.manifest import (
    COMPLETED,
    FAILED,
    INTERRUPTED,
    PRUNED,
    RUNNING,
    Entry,
    Manifest,
)
from athanor.sweep.slots import Slot

log = logging.getLogger("athanor.sweep")

CONSOLE_LOG = "console.log"  # the job process's stdout + stderr, in its run folder
POLL_S = 0.2
OOM_MARKS = ("out of memory", "outofmemoryerror")


@dataclass
class Job:
    entry: Entry
    argv: list[str]
    oom_retry: list[str] = field(default_factory=list)  # overrides added on an OOM retry

    @property
    def folder(self) -> Path:
        return Path(self.entry.folder)


# Watch(job, run folder) -> True to stop the job as pruned (called while it runs)
Watch = Callable[[Job], bool]


@dataclass
class _Running:
    job: Job
    slot: Slot
    process: subprocess.Popen
    console: object
    pruned: bool = False


def failure_reason(folder: Path, returncode: int) -> str:
    """Why a job failed: the error its summary.json records, else its last console line."""
    error = RunDir(folder).read_summary().get("error")
    if error:
        return str(error)
    try:
        text = (folder / CONSOLE_LOG).read_text()
        lines = [line for line in text.splitlines() if line.strip() and not _boilerplate(line)]
    except OSError:
        lines = []
    last = lines[-1].strip() if lines else "no output"
    return f"exit code {returncode}: {last[:300]}"


def _boilerplate(line: str) -> bool:
    """Hydra's closing hints, which say nothing about why the job failed."""
    return line.startswith(
        ("Set the environment variable HYDRA_FULL_ERROR", "See https://hydra.cc")
    )


def is_oom(reason: str) -> bool:
    return any(mark in reason.lower() for mark in OOM_MARKS)


class Pool:
    """Run ``jobs`` over ``slots``; the manifest says where each one stands at every moment."""

    def __init__(self, slots: list[Slot], manifest: Manifest, watch: Watch | None = None) -> None:
        self.slots, self.manifest, self.watch = slots, manifest, watch
        self.counts = {"done": 0, "failed": 0}

    def run(self, jobs: list[Job]) -> list[Entry]:
        queue, free = deque(jobs), list(self.slots)
        running: list[_Running] = []
        try:
            while queue or running:
                while queue and free:
                    running.append(self._start(queue.popleft(), free.pop(0)))
                    self._progress(running, queue)
                time.sleep(POLL_S)
                for r in list(running):
                    if r.process.poll() is None:
                        self._watch(r)
                        continue
                    running.remove(r)
                    free.append(r.slot)  # the slot is free whatever happened to the job
                    retry = self._finish(r)
                    if retry is not None:
                        queue.appendleft(retry)
                    self._progress(running, queue)
        except KeyboardInterrupt:
            # the jobs got the same Ctrl-C: they checkpoint and stop; wait for them to say so
            for r in running:
                r.process.wait()
                self._finish(r, interrupted=True)
            raise
        return [j.entry for j in jobs]

    def _start(self, job: Job, slot: Slot) -> _Running:
        job.folder.mkdir(parents=True, exist_ok=True)
        console = (job.folder / CONSOLE_LOG).open("a")
        env = {**os.environ, **slot.env(), "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(job.argv, stdout=console, stderr=subprocess.STDOUT, env=env)
        e = job.entry
        e.status, e.reason, e.attempts, e.started, e.ended = (
            RUNNING,
            None,
            e.attempts + 1,
            time.time(),
            None,
        )
        self.manifest.put(e)
        log.info("sweep: job %d started on %s: %s", e.index, slot.name, " ".join(e.overrides))
        return _Running(job, slot, process, console)

    def _watch(self, r: _Running) -> None:
        if self.watch is None or r.pruned:
            return
        if self.watch(r.job):
            r.pruned = True  # SIGTERM: the run checkpoints and stops after the current step
            log.info("sweep: job %d pruned (stopping it)", r.job.entry.index)
            r.process.send_signal(signal.SIGTERM)

    def _finish(self, r: _Running, *, interrupted: bool = False) -> Job | None:
        """Record how the job ended; an OOM job to retry with a halved batch, or None."""
        r.console.close()
        e, code = r.job.entry, r.process.returncode
        e.ended = time.time()
        summary_status = RunDir(r.job.folder).read_summary().get("status")
        if r.pruned:
            e.status, e.reason = PRUNED, "stopped early by the pruner"
            correct_outcome(RunDir(r.job.folder), PRUNED, e.reason)
        elif code == 0 and summary_status in (COMPLETED, None):
            e.status = COMPLETED
            self.counts["done"] += 1
        elif interrupted or code == 130 or code == -signal.SIGINT:
            e.status, e.reason = INTERRUPTED, "interrupted: resumes from its last checkpoint"
        else:
            e.status, e.reason = FAILED, failure_reason(r.job.folder, code)
        self.manifest.put(e)
        word = {COMPLETED: "completed", PRUNED: "pruned"}.get(e.status, e.status)
        log.info("sweep: job %d %s%s", e.index, word, f": {e.reason}" if e.status == FAILED else "")
        if e.status == FAILED and r.job.oom_retry and is_oom(e.reason or ""):
            log.info("sweep: job %d ran out of memory; retrying with %s", e.index, r.job.oom_retry)
            retry = Job(e, [*r.job.argv, *r.job.oom_retry])
            return retry
        if e.status == FAILED:
            self.counts["failed"] += 1
        return None

    def _progress(self, running: list[_Running], queue: deque) -> None:
        log.info(
            "sweep: %d done, %d running, %d failed, %d left",
            self.counts["done"],
            len(running),
            self.counts["failed"],
            len(queue),
        )
