"""Losses: the LOSSES registry. A loss maps (logits [B, K], targets) -> scalar, where targets are
class indices [B] (int64) or soft targets [B, K] (float: mixup/cutmix, multi-label).

With mixup/cutmix on, `cross_entropy` runs as `soft_target_ce` (same arguments, same value) and
a loss that needs class indices (``INDEX_ONLY``) is refused before training. `loss.flooding`
wraps any loss.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from athanor.errors import ConfigError
from athanor.registry import Registry

log = logging.getLogger(__name__)

LOSSES: Registry = Registry("loss", runtime=("num_classes",), shared=("flooding",))
INDEX_ONLY = frozenset({"focal"})  # losses defined on the true class index only


def _class_weights(weight: list[float] | None, num_classes: int) -> torch.Tensor | None:
    if weight is None:
        return None
    if len(weight) != num_classes:
        raise ConfigError(f"loss.weight has {len(weight)} entries for {num_classes} classes.")
    return torch.tensor(weight, dtype=torch.float32)


def _soft(targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Class indices [B] -> one-hot [B, K]; soft targets [B, K] are checked and passed through."""
    if targets.dtype in (torch.int64, torch.int32):
        return F.one_hot(targets.long(), logits.shape[1]).to(logits.dtype)
    if targets.shape != logits.shape:
        raise ValueError(
            f"soft targets of shape {tuple(targets.shape)} do not match the logits "
            f"{tuple(logits.shape)} (one probability per class is needed)."
        )
    return targets.to(logits.dtype)


class SoftTargetCrossEntropy(nn.Module):
    """-sum_k t_k log softmax(x)_k, averaged over the batch, with t smoothed to
    (1 - eps) t + eps / K and optionally weighted per class (w_k t_k)."""

    def __init__(self, label_smoothing: float = 0.0, weight: torch.Tensor | None = None):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        t = _soft(targets, logits)
        if self.label_smoothing:
            t = t * (1 - self.label_smoothing) + self.label_smoothing / logits.shape[1]
        if self.weight is not None:
            t = t * self.weight
        return -(t * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


class FocalLoss(nn.Module):
    """Multi-class focal loss (Lin et al. 2017): -alpha_y (1 - p_y)^gamma log p_y, batch mean.
    Down-weights easy examples; gamma=0 and no alpha is plain cross-entropy."""

    def __init__(self, gamma: float, alpha: torch.Tensor | None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("alpha", alpha)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.ndim != 1:
            raise ValueError("focal loss needs class indices [B], not soft targets")
        logp = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)  # [B]
        loss = -((1 - logp.exp()) ** self.gamma) * logp
        if self.alpha is not None:
            loss = loss * self.alpha[targets]
        return loss.mean()


class BinaryCrossEntropy(nn.BCEWithLogitsLoss):
    """One sigmoid per class: multi-label / one-hot targets (class indices become one-hot)."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return super().forward(logits, _soft(targets, logits))


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
    """Cross-entropy with optional label smoothing and per-class weights."""
    # torch's loss takes class indices and class probabilities alike
    return nn.CrossEntropyLoss(
        weight=_class_weights(weight, num_classes), label_smoothing=label_smoothing
    )


@LOSSES.register("soft_target_ce")
def soft_target_ce(
    *, num_classes: int, label_smoothing: float = 0.0, weight: list[float] | None = None
) -> nn.Module:
    """Cross-entropy against class probabilities (mixup/cutmix targets).

    Class indices become one-hot, so it also works without mixing."""
    return SoftTargetCrossEntropy(label_smoothing, _class_weights(weight, num_classes))


@LOSSES.register("focal")
def focal(
    *, num_classes: int, gamma: float = 2.0, alpha: float | list[float] | None = None
) -> nn.Module:
    """Multi-class focal loss: `gamma` focuses on hard examples; `alpha` per class."""
    if gamma < 0:
        raise ConfigError(f"loss.gamma={gamma} must be >= 0.")
    if isinstance(alpha, int | float):
        alpha = [float(alpha)] * num_classes
    return FocalLoss(gamma, _class_weights(alpha, num_classes))


@LOSSES.register("bce")
def bce(*, num_classes: int, pos_weight: list[float] | None = None) -> nn.Module:
    """Binary cross-entropy per class (sigmoid): multi-label or one-hot targets."""
    return BinaryCrossEntropy(pos_weight=_class_weights(pos_weight, num_classes))


def check_soft_targets(spec: dict[str, Any], *, mixing: bool) -> None:
    """Refuse, before any work, mixup/cutmix with a loss that needs class indices."""
    if mixing and spec.get("name") in INDEX_ONLY:
        raise ConfigError(
            f"loss={spec['name']} needs class indices, but augment mixup/cutmix produce soft "
            "targets (class probabilities). Use loss=soft_target_ce (or cross_entropy, or bce), "
            "or turn mixing off (augment.mixup_alpha=0 augment.cutmix_alpha=0)."
        )


def build_loss(spec: dict, *, num_classes: int, soft_targets: bool = False) -> nn.Module:
    """The configured loss; ``soft_targets``: training targets are class probabilities."""
    _, _, shared = LOSSES.split(spec)
    if soft_targets and spec["name"] == "cross_entropy":
        spec = {**spec, "name": "soft_target_ce"}
        log.info("loss: mixup/cutmix give soft targets, so cross_entropy runs as soft_target_ce")
    check_soft_targets(spec, mixing=soft_targets)
    loss = LOSSES.build(spec, num_classes=num_classes)
    level = shared.get("flooding")
    return Flooded(loss, float(level)) if level else loss
