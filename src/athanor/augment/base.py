"""The Augmentation contract shared by the memory and the DataLoader data paths."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

# A batch op maps float images [B, C, H, W] to the same shape, drawing its randomness from the
# given generator (on the batch's device) so that batches are reproducible (see batch_ops.py).
BatchOp = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class Augmentation:
    """What one `augment` config does. Training batches go through, in order:

    sample_train (per image, uint8 CHW, DataLoader workers) -> to the device -> batch_ops (float
    in [0, 1]) -> normalize -> normalized_ops (e.g. erasing to the mean colour) -> mixup/cutmix.
    Validation sees only sample_val (resize / centre crop), never the random ops."""

    batch_ops: list[BatchOp] = field(default_factory=list)
    normalized_ops: list[BatchOp] = field(default_factory=list)
    sample_train: Callable | None = None  # per-sample transform on uint8 CHW (forces DataLoader)
    sample_val: Callable | None = None  # per-sample eval transform (e.g. Resize + CenterCrop)

    @property
    def batchable(self) -> bool:
        """True when training needs no per-sample transform (the memory path can run it)."""
        return self.sample_train is None

    @property
    def random(self) -> bool:
        return bool(self.batch_ops or self.normalized_ops or self.sample_train)

    def apply_batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for op in self.batch_ops:
            x = op(x, gen)
        return x

    def apply_normalized(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for op in self.normalized_ops:
            x = op(x, gen)
        return x

    def describe(self) -> str:
        per_sample = [f"{self.sample_train} per sample"] if self.sample_train else []
        on_device = [str(op) for op in (*self.batch_ops, *self.normalized_ops)]
        parts = per_sample + ([f"{' + '.join(on_device)} on the device"] if on_device else [])
        return "; ".join(parts) or "none"


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

    def __post_init__(self) -> None:
        from athanor.errors import ConfigError

        for key in ("mixup_alpha", "cutmix_alpha"):
            if getattr(self, key) < 0:
                raise ConfigError(f"augment.{key}={getattr(self, key)} must be >= 0 (0 = off).")
        for key in ("mix_prob", "switch_prob"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"augment.{key}={getattr(self, key)} must be in [0, 1].")

    @property
    def enabled(self) -> bool:
        return self.mix_prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)
