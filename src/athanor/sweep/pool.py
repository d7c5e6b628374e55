"""The job pool: every sweep job is its own process on its own slot, a new one starting as soon
as a slot frees. A job that fails is marked failed with its reason and frees its slot; the others
go on. Knows nothing of Hydra: a job is an argv, a folder and the overrides that name it.

A stop signal to the pool's process (SIGINT, SIGTERM, SIGUSR1) starts no new job and is handed on
to every running job as SIGTERM (checkpoint, stop, exit 130); a second Ctrl-C as SIGINT (exit at
once). The jobs die with the pool's process (Linux: the kernel sends them SIGTERM when it dies,
kill -9 included). A job killed by a signal (a segfault, the OOM killer) is marked failed with the
signal's name, in its summary.json too, and its lock is released.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from athanor.errors import ConfigError
from athanor.process.signals import StopSignals, signal_name
from athanor.record.folder import RunDir
from athanor.record.lock import check_free, release_dead
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
PR_SET_PDEATHSIG = 1  # linux/prctl.h
PREVIOUS_STOP_S = 120  # how long a restarted sweep waits for a job's last process to save
# what a signal that killed a job most likely means, for its reason
SIGNAL_CAUSES = {
    signal.SIGKILL: "the kernel's out-of-memory killer sends it when memory runs out, or kill -9",
    signal.SIGSEGV: "a segmentation fault in native code",
    signal.SIGBUS: "a bus error in native code (often a full /dev/shm)",
    signal.SIGABRT: "an abort in native code",
}


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
    told: set[int] = field(default_factory=set)  # the stop signals relayed to it


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


def killed_reason(signum: int) -> str:
    """Why a job that a signal killed failed: the signal's name and its likely cause."""
    cause = SIGNAL_CAUSES.get(signum)
    return f"killed by {signal_name(signum)}" + (f" ({cause})" if cause else "")


def die_with_this_process() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel send the job SIGTERM when this process dies, however
    it dies (kill -9 too), so no job trains on as an orphan; None off Linux. libc is loaded here:
    the forked child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # died before the request was in place: do not start
            os._exit(128 + signal.SIGTERM)

    return arm


def wait_for_previous_process(folder: Path, index: int) -> None:
    """A sweep restarted right after its predecessor died: that one's job may still be saving
    (the kernel told it to stop). Wait for it to release its run folder, for a while, rather
    than start a second process that would be refused and counted failed."""
    started = time.monotonic()
    while time.monotonic() - started < PREVIOUS_STOP_S:  # then the job names the holder, failed
        try:
            check_free(folder)
            return
        except ConfigError:
            if time.monotonic() - started < POLL_S:  # said once, at first
                log.info("sweep: job %d's previous process is still stopping; waiting", index)
            time.sleep(POLL_S)


class Pool:
    """Run ``jobs`` over ``slots``; the manifest says where each one stands at every moment."""

    def __init__(self, slots: list[Slot], manifest: Manifest, watch: Watch | None = None) -> None:
        self.slots, self.manifest, self.watch = slots, manifest, watch
        self.counts = {"done": 0, "failed": 0}
        self.stopped_by: int | None = None  # the stop signal that ended the sweep early

    def run(self, jobs: list[Job]) -> list[Entry]:
        """Run ``jobs``; on a stop signal, the running ones are stopped (``stopped_by`` says
        which signal) and the queued ones stay pending."""
        queue, free = deque(jobs), list(self.slots)
        running: list[_Running] = []
        with StopSignals.watch() as signals:
            while running or (queue and not signals.requested):
                while queue and free and not signals.requested:
                    running.append(self._start(queue.popleft(), free.pop(0)))
                    self._progress(running, queue)
                time.sleep(POLL_S)
                self._relay(signals, running, queue)
                for r in list(running):
                    if r.process.poll() is None:
                        self._watch(r)
                        continue
                    running.remove(r)
                    free.append(r.slot)  # the slot is free whatever happened to the job
                    retry = self._finish(r, stopping=signals.requested)
                    if retry is not None:
                        queue.appendleft(retry)
                    self._progress(running, queue)
            self.stopped_by = signals.received if signals.requested else None
        return [j.entry for j in jobs]

    def _relay(self, signals: StopSignals, running: list[_Running], queue: deque) -> None:
        """A stop request reaches every running job: SIGTERM (stop after the step, save), and
        SIGINT once this process had two Ctrl-C (exit at once)."""
        wanted = [signal.SIGTERM] if signals.requested else []
        wanted += [signal.SIGINT] if signals.sigints >= 2 else []
        for r in running:
            for sig in wanted:
                if sig in r.told:
                    continue
                if not r.told:
                    log.warning(
                        "sweep: %s: job %d stops after its current step (checkpoint, "
                        "interrupted); %d queued job(s) not started",
                        signal_name(signals.received),
                        r.job.entry.index,
                        len(queue),
                    )
                r.told.add(sig)
                r.process.send_signal(sig)

    def _start(self, job: Job, slot: Slot) -> _Running:
        job.folder.mkdir(parents=True, exist_ok=True)
        console = (job.folder / CONSOLE_LOG).open("a")
        env = {**os.environ, **slot.env(), "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            job.argv,
            stdout=console,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=die_with_this_process(),  # noqa: PLW1509 - only calls prctl, no locks
        )
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

    def _finish(self, r: _Running, *, stopping: bool = False) -> Job | None:
        """Record how the job ended; an OOM job to retry with a halved batch, or None.
        ``stopping``: a stop signal came, and a job it ended is interrupted, not failed."""
        r.console.close()
        e, code, run = r.job.entry, r.process.returncode, RunDir(r.job.folder)
        e.ended = time.time()
        summary_status = run.read_summary().get("status")
        stop_codes = (130, -signal.SIGINT) + ((-signal.SIGTERM,) if stopping else ())
        if r.pruned:
            e.status, e.reason = PRUNED, "stopped early by the pruner"
            correct_outcome(run, PRUNED, e.reason)
        elif code == 0 and summary_status in (COMPLETED, None):
            e.status = COMPLETED
            self.counts["done"] += 1
        elif code in stop_codes:
            e.status, e.reason = INTERRUPTED, "interrupted: resumes from its last checkpoint"
        elif code < 0:  # no chance to say why: the record and the lock are the pool's to close
            e.status, e.reason = FAILED, killed_reason(-code)
            correct_outcome(run, FAILED, e.reason)
            release_dead(r.job.folder, r.process.pid)
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
