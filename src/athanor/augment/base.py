"""The Augmentation contract shared by the memory and the DataLoader data paths."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from athanor.config.groups import MixOptions  # the group-wide mix keys, typed with the others


@dataclass(frozen=True)
class Draws:
    """The random numbers of one batch. They are drawn for the whole global batch and each DDP
    rank keeps the rows of its own shard, so an image's augmentation does not depend on the
    number of processes: a 2-process run augments exactly like the 1-process run."""

    generator: torch.Generator  # seeded from (seed, epoch, batch index), on the batch's device
    offset: int = 0  # first row of this rank's shard within the global batch
    total: int | None = None  # rows of the global batch; None: this batch is all of it

    def uniform(self, rows: int, *shape: int) -> torch.Tensor:
        """[rows, *shape] uniform numbers in [0, 1): this shard's rows of the global draw."""
        total = self.total or rows
        u = torch.rand(total, *shape, generator=self.generator, device=self.generator.device)
        return u[self.offset : self.offset + rows]


# A batch op maps float images [B, C, H, W] to the same shape, taking every random number from
# the batch's Draws, so that batches are reproducible (see batch_ops.py).
BatchOp = Callable[[torch.Tensor, Draws], torch.Tensor]


@dataclass
class Augmentation:
    """What one `augment` config does. Training batches go through, in order:

    sample_train (per image, uint8 CHW, DataLoader workers) -> to the device -> batch_ops (float
    in [0, 1]; the uint8 images when every op is ``geometric``) -> normalize -> normalized_ops
    (e.g. erasing to the mean colour) -> mixup/cutmix.
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
    def geometric(self) -> bool:
        """True when every batch op only moves pixels (crop, flip): they give the same images
        on uint8 as on float, so they can run before the conversion, on a quarter of the bytes."""
        return all(getattr(op, "geometric", False) for op in self.batch_ops)

    @property
    def random(self) -> bool:
        return bool(self.batch_ops or self.normalized_ops or self.sample_train)

    def apply_batch(self, x: torch.Tensor, draws: Draws) -> torch.Tensor:
        for op in self.batch_ops:
            x = op(x, draws)
        return x

    def apply_normalized(self, x: torch.Tensor, draws: Draws) -> torch.Tensor:
        for op in self.normalized_ops:
            x = op(x, draws)
        return x

    def describe(self) -> str:
        per_sample = [f"{self.sample_train} per sample"] if self.sample_train else []
        on_device = [str(op) for op in (*self.batch_ops, *self.normalized_ops)]
        parts = per_sample + ([f"{' + '.join(on_device)} on the device"] if on_device else [])
        return "; ".join(parts) or "none"


__all__ = ["Augmentation", "BatchOp", "Draws", "MixOptions"]
