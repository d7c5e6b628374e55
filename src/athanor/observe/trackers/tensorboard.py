"""TensorBoard: scalars, images, histograms and a HPARAMS entry in <run>/tb."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from athanor.config.flatten import flatten
from athanor.observe.trackers.base import TRACKERS, NullTracker, RunInfo, TrackerContext
from athanor.observe.trackers.sweep import hparam_view


class TensorBoardTracker(NullTracker):
    def __init__(
        self,
        logdir: Path,
        *,
        purge_step: int | None = None,
        flush_secs: int = 30,
        run: RunInfo | None = None,
    ):
        from torch.utils.tensorboard import SummaryWriter  # lazy: ~0.5 s of imports

        # purge_step: a resumed run drops events after its checkpoint, so no step appears twice
        self.writer = SummaryWriter(str(logdir), purge_step=purge_step, flush_secs=flush_secs)
        self.swept = run.swept if run is not None else ()

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def image(self, tag: str, image: torch.Tensor, step: int) -> None:
        self.writer.add_image(tag, image, step)

    def figure(self, tag: str, figure: Any, step: int) -> None:
        self.writer.add_figure(tag, figure, step)

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        self.writer.add_histogram(tag, values.detach().float().cpu(), step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """The swept keys and a few headline keys of the (nested) config, not all ~100: the
        HPARAMS table compares what varied; the full config stays in the run folder."""
        clean = {
            k: v if isinstance(v, int | float | str | bool) else str(v)
            for k, v in hparam_view(flatten(hparams), self.swept).items()
        }
        # run_name="." keeps the HPARAMS entry in the run's own event folder
        self.writer.add_hparams(clean, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")

    def flush(self) -> None:
        self.writer.flush()

    def finish(self, status: str) -> None:
        self.writer.close()


@TRACKERS.register("tensorboard")
def tensorboard_tracker(ctx: TrackerContext) -> TensorBoardTracker:
    """TensorBoard event files in <run>/tb (`tensorboard --logdir outputs`)."""
    # a resumed run drops the events the killed run wrote after its checkpoint
    purge = None if ctx.resumed_step is None else ctx.resumed_step + 1
    return TensorBoardTracker(
        ctx.run_folder / "tb", purge_step=purge, flush_secs=ctx.settings.flush_secs, run=ctx.run
    )
