"""The Augmentation contract shared by the memory and the DataLoader data paths."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

# A batch op maps float images [B, C, H, W] in [0, 1] to the same shape, drawing its randomness
# from the given generator (on the batch's device) so that batches are reproducible.
BatchOp = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class Augmentation:
    batch_ops: list[BatchOp] = field(default_factory=list)  # training only, on the device
    sample_train: Callable | None = None  # per-sample transform on uint8 CHW (forces DataLoader)
    sample_val: Callable | None = None  # per-sample eval transform (e.g. Resize + CenterCrop)
    description: str = "none"

    @property
    def batchable(self) -> bool:
        """True when training needs no per-sample transform (the memory path can run it)."""
        return self.sample_train is None

    def apply_batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for op in self.batch_ops:
            x = op(x, gen)
        return x


@dataclass(frozen=True)
class MixOptions:
    """Batch-level mixing, usable with any augment: `augment.mixup_alpha=0.2`."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0  # probability that a batch is mixed at all
    switch_prob: float = 0.5  # with both alphas > 0: probability of cutmix instead of mixup

    @staticmethod
    def keys() -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(MixOptions))

    @property
    def enabled(self) -> bool:
        return self.mix_prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)
