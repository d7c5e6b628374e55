"""Experiment tracking: TensorBoard on the main process, a do-nothing tracker everywhere else,
so the loop never asks `if tracker:`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from athanor.config.flatten import flatten


class NullTracker:
    """Accepts everything, writes nothing (non-zero ranks, dry runs, logger.tensorboard=false)."""

    def scalars(self, values: dict[str, float], step: int) -> None: ...

    def image(self, tag: str, image: torch.Tensor, step: int) -> None: ...

    def figure(self, tag: str, figure: Any, step: int) -> None: ...

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None: ...

    def text(self, tag: str, text: str, step: int) -> None: ...

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class TensorBoardTracker(NullTracker):
    def __init__(self, logdir: Path, *, purge_step: int | None = None, flush_secs: int = 30):
        from torch.utils.tensorboard import SummaryWriter  # lazy: ~0.5 s of imports

        # purge_step: a resumed run drops events after its checkpoint, so no step appears twice
        self.writer = SummaryWriter(str(logdir), purge_step=purge_step, flush_secs=flush_secs)

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
        """``hparams`` may be nested (the run's config): keys are flattened to optim.lr etc."""
        clean = {
            k: v if isinstance(v, int | float | str | bool) else str(v)
            for k, v in flatten(hparams).items()
        }
        # run_name="." keeps the HPARAMS entry in the run's own event folder
        self.writer.add_hparams(clean, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
