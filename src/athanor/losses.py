"""Losses: the LOSSES registry. A loss maps (logits [B, K], targets) -> scalar, where targets are
class indices [B] or soft targets [B, K] (mixup/cutmix). `loss.flooding` works with any loss."""

from __future__ import annotations

import torch
from torch import nn

from athanor.registry import Registry

LOSSES: Registry = Registry("loss", runtime=("num_classes",), shared=("flooding",))


class Flooded(nn.Module):
    """Flooding (Ishida et al. 2020): |loss - b| + b keeps the training loss near level b."""

    def __init__(self, loss: nn.Module, level: float):
        super().__init__()
        self.loss, self.level = loss, level

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = self.loss(logits, targets)
        return (loss - self.level).abs() + self.level


@LOSSES.register("cross_entropy")
def cross_entropy(
    *, num_classes: int, label_smoothing: float = 0.0, weight: list[float] | None = None
) -> nn.Module:
    """Cross-entropy with optional label smoothing and per-class weights (accepts soft targets)."""
    if weight is not None and len(weight) != num_classes:
        raise ValueError(f"loss.weight has {len(weight)} entries for {num_classes} classes")
    w = torch.tensor(weight, dtype=torch.float32) if weight is not None else None
    return nn.CrossEntropyLoss(weight=w, label_smoothing=label_smoothing)


def build_loss(spec: dict, *, num_classes: int) -> nn.Module:
    _, _, shared = LOSSES.split(spec)
    loss = LOSSES.build(spec, num_classes=num_classes)
    level = shared.get("flooding")
    return Flooded(loss, float(level)) if level else loss
