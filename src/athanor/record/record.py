"""The run record: the one writer of a run's summary.json and metrics.jsonl.

``RunRecord`` writes the summary at the start (status ``running``, the environment, what a
re-run needs), at a resume (the ``resumes`` list), after every evaluation (a line of
metrics.jsonl) and at the end (completed / failed / interrupted, with best and final results);
``attach`` writes the files the summary names beside it (the resolved config, the patch, the data
fingerprint), and takes a parent's correction of how a dead run ended (``correct_outcome``). It
keeps the summary in memory as one typed ``Summary`` (record/summary.py, the schema): no other
module writes summary.json.
Best and final come from its ``MetricsLog``, a part of the train state (saved in every
checkpoint), so a resumed run goes on from the checkpoint's own best, not from whatever a killed
process appended to metrics.jsonl later.

Every JSON file is strict JSON: a non-finite number is written as ``null`` and named in
``nonfinite`` beside it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from athanor.metrics.monitor import Monitor
from athanor.record.folder import RunDir, strict_record, write_json_atomic, write_text_atomic
from athanor.record.summary import Segment, Summary


class MetricsLog:
    """Every evaluation's scalars pass through here: the final one, and the best one by the
    checkpoint monitor (which also decides best.pt). Stateful: saved with the train state."""

    def __init__(self, monitor: Monitor):
        self.monitor = monitor
        self.best: dict[str, Any] = {}
        self.final: dict[str, Any] = {}

    def add(self, record: dict[str, Any]) -> bool:
        """Take one evaluation record; True when it is the best so far."""
        self.final = record
        improved = self.monitor.update(record)
        if improved:
            self.best = record
        return improved

    def best_value(self) -> float | None:
        return self.monitor.best

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor.state_dict(), "best": self.best, "final": self.final}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state["monitor"])
        self.best, self.final = dict(state["best"]), dict(state["final"])


class RunRecord:
    """summary.json and metrics.jsonl of one run. ``active``: this process writes (rank 0);
    the others keep the metrics log only (best/final agree across ranks). The summary is a
    ``Summary`` (record/summary.py), written whole."""

    def __init__(self, run: RunDir, log: MetricsLog | None = None, *, active: bool = True):
        self.run, self.log, self.active = run, log, active
        self.summary = Summary()
        self.clock = time.monotonic()

    def _write(self) -> None:
        if self.active:
            write_json_atomic(self.run.summary, self.summary.to_json())

    def _open_segment(self, step: int) -> None:
        self.clock = time.monotonic()
        self.summary.segments.append(Segment(started=_now(), start_step=step))

    def start(self, **fields: Any) -> None:
        """A new run: the folder, and a summary saying it runs."""
        if not self.active:
            return
        self.run.path.mkdir(parents=True, exist_ok=True)
        self.summary = Summary(started=_now(), **fields)
        self._open_segment(step=0)
        self._write()

    def attach(self, path: Path, text: str) -> str:
        """A file beside the summary (the patch, the data fingerprint, ...): written, and its
        name returned for the summary to name it."""
        if self.active:
            write_text_atomic(path, text)
        return path.name

    def resume(self, entry: dict[str, Any], after_step: int, **fields: Any) -> None:
        """A resumed run: keep the earlier summary (read once), append to ``resumes`` and a new
        segment, and drop the metrics a killed process logged after the checkpoint (they come
        again)."""
        if not self.active:
            return
        self.summary = dataclasses.replace(
            Summary.from_json(self.run.read_summary()), status="running", **fields
        )
        self.summary.resumes.append(entry)
        self._open_segment(step=after_step)
        self.run.truncate_metrics(after_step=after_step)
        self._write()

    def evaluation(self, record: dict[str, Any], **details: Any) -> bool:
        """One evaluation's scalars (epoch, step, metrics) and its ``details`` (e.g. per-class
        accuracy, kept out of best/final). True when it is the best so far."""
        improved = self.log.add(record)
        if self.active:
            line = json.dumps(strict_record({**record, **details}), allow_nan=False)
            with self.run.metrics.open("a") as f:
                f.write(line + "\n")
                f.flush()
        return improved

    def finish(
        self,
        status: str,
        error: str | None = None,
        *,
        epochs: int | None = None,
        steps: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """How the run ended, with best and final results; closes this process's segment and
        sums the run's wall time over every segment. Returns the summary as written."""
        segment = self.summary.segment if self.summary.segments else None
        if segment is not None:
            segment.ended, segment.end_step = _now(), steps
            segment.seconds = round(time.monotonic() - self.clock, 2)
        self.summary = dataclasses.replace(
            self.summary,
            status=status,
            error=error,
            wall_time_s=round(sum(s.seconds for s in self.summary.segments), 2),
            monitor=self.log.monitor.name,
            mode=self.log.monitor.mode,
            best=self.log.best,
            final=self.log.final,
            epochs=epochs,
            steps=steps,
            **fields,
        )
        self._write()
        return self.summary.to_json()

    def correct(self, status: str, error: str) -> None:
        """A word from outside the run on how it ended (see ``correct_outcome``)."""
        if not self.run.started():
            return
        self.summary = Summary.from_json(self.run.read_summary())
        self.summary.status, self.summary.error = status, error
        self._write()

    def failed_before_start(self, reason: str) -> None:
        """A run that failed while being built (the user's builder or Dataset raised before
        ``start``): summary.json says `failed` with the reason, and that the folder holds no run
        to continue (a rerun into it is welcome)."""
        self.run.path.mkdir(parents=True, exist_ok=True)
        self.summary = Summary(status="failed", started=_now(), error=reason, never_started=True)
        self._write()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def correct_outcome(run: RunDir, status: str, error: str) -> None:
    """A word from outside the run on how it ended: the DDP launcher's root cause of a failed
    worker group (rank 0's record may only say that another rank failed), or the sweep pool's
    `pruned`. Nothing is written for a run that never started (no record)."""
    RunRecord(run).correct(status, error)
