"""TensorBoard: scalars, images, histograms and a HPARAMS entry in <run>/tb."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from athanor.config.flatten import flatten
from athanor.observe.trackers.base import TRACKERS, NullTracker, RunInfo, TrackerContext
from athanor.observe.trackers.swept_keys import hparam_view


class TensorBoardTracker(NullTracker):
    """The event file is opened with the first write after the start-up (step >= 1, the first
    log step), in the calling thread: importing TensorBoard's modules (~0.1 s on an idle 2-core
    machine) before the first optimizer step would delay that step, and importing them in a
    thread beside the training cost more: a digits run measured one ~0.5 s stall at that step
    and ~2 ms more per step for the next epochs. Writes of the start-up (the image grid at step
    0) are kept and replayed first, in order; anything that needs the file (a flush before a
    checkpoint, the HPARAMS entry, the end) opens it."""

    def __init__(
        self,
        logdir: Path,
        *,
        purge_step: int | None = None,
        flush_secs: int = 30,
        run: RunInfo | None = None,
    ):
        self.logdir, self.purge_step, self.flush_secs = logdir, purge_step, flush_secs
        self.swept = run.swept if run is not None else ()
        self._writer = None
        self._pending: list[tuple[str, tuple]] = []  # (SummaryWriter method, arguments)

    @property
    def writer(self):
        """The SummaryWriter, opened now if need be (replaying the start-up's writes)."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: a resumed run drops events after its checkpoint, so no step appears twice
            self._writer = SummaryWriter(
                str(self.logdir), purge_step=self.purge_step, flush_secs=self.flush_secs
            )
            for method, args in self._pending:
                getattr(self._writer, method)(*args)
            self._pending.clear()
        return self._writer

    def _write(self, method: str, step: int, *args) -> None:
        """``args`` end with ``step``; a write at step 0 waits for the first one after it."""
        if self._writer is None and step < 1:
            self._pending.append((method, args))
            return
        getattr(self.writer, method)(*args)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self._write("add_scalar", step, tag, value, step)

    def image(self, tag: str, image: torch.Tensor, step: int) -> None:
        self._write("add_image", step, tag, image, step)

    def figure(self, tag: str, figure: Any, step: int) -> None:
        self._write("add_figure", step, tag, figure, step)

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        self._write("add_histogram", step, tag, values.detach().float().cpu(), step)

    def text(self, tag: str, text: str, step: int) -> None:
        self._write("add_text", step, tag, text, step)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """The swept keys and a few headline keys of the (nested) config, not all ~100: the
        HPARAMS table compares what varied; the full config stays in the run folder."""
        clean = {
            k: v if isinstance(v, int | float | str | bool) else str(v)
            for k, v in hparam_view(flatten(hparams), self.swept).items()
        }
        # run_name="." keeps the HPARAMS entry in the run's own event folder
        metrics = {f"hparam/{k}": v for k, v in metrics.items()}
        self.writer.add_hparams(clean, metrics, run_name=".")

    def flush(self) -> None:
        if self._writer is not None or self._pending:
            self.writer.flush()

    def finish(self, status: str) -> None:
        self.writer.close()  # opened even if nothing came: every run has its event file


@TRACKERS.register("tensorboard")
def tensorboard_tracker(ctx: TrackerContext) -> TensorBoardTracker:
    """TensorBoard event files in <run>/tb (`tensorboard --logdir outputs`)."""
    # a resumed run drops the events the killed run wrote after its checkpoint
    purge = None if ctx.resumed_step is None else ctx.resumed_step + 1
    return TensorBoardTracker(
        ctx.run_folder / "tb", purge_step=purge, flush_secs=ctx.settings.flush_secs, run=ctx.run
    )
