"""athanor's losses, registered in LOSSES. A loss maps (logits [B, K], targets) -> scalar, where targets are
class indices [B] (int64) or soft targets [B, K] (float: mixup/cutmix, multi-label).

With mixup/cutmix on, `cross_entropy` runs as `soft_target_ce` (same arguments, same value) and
a loss that needs class indices (``INDEX_ONLY``) is refused before training. `loss.flooding`
wraps any loss.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import nn

from athanor.errors import ConfigError
from athanor.losses.registry import LOSSES
from athanor.typecheck import NonNegative, Range

Smoothing = Annotated[float, Range(0, 1, high_open=True)]  # 1 would erase the labels

log = logging.getLogger(__name__)

INDEX_ONLY = frozenset({"focal"})  # losses defined on the true class index only
PENALTIES = frozenset({"l1_weights"})  # on the model's weights, not its outputs: terms only


PER_CLASS = ("weight", "alpha", "pos_weight")  # loss arguments with one entry per class
ClassWeights = Annotated[list[float], NonNegative] | None


def _length_problem(key: str, values: Any, num_classes: int) -> str | None:
    if not isinstance(values, list | tuple) or len(values) == num_classes:
        return None
    return (
        f"loss.{key} has {len(values)} entries but the data has {num_classes} classes; give one "
        f"per class (or remove loss.{key})."
    )


def _class_weights(key: str, weight: list[float] | None, num_classes: int) -> torch.Tensor | None:
    if weight is None:
        return None
    problem = _length_problem(key, weight, num_classes)
    if problem:
        raise ConfigError(problem)
    return torch.tensor(weight, dtype=torch.float32)


def check_class_lengths(spec: dict[str, Any], class_names: list[str] | None) -> None:
    """Refuse, before any work, per-class loss arguments whose length is not the class count
    (when the config names the classes; otherwise the build checks it against the data)."""
    if class_names is None:
        return
    for key in PER_CLASS:
        problem = _length_problem(key, spec.get(key), len(class_names))
        if problem:
            raise ConfigError(problem)


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
    *, num_classes: int, label_smoothing: Smoothing = 0.0, weight: ClassWeights = None
) -> nn.Module:
    """Cross-entropy with optional label smoothing and per-class weights."""
    # torch's loss takes class indices and class probabilities alike
    return nn.CrossEntropyLoss(
        weight=_class_weights("weight", weight, num_classes), label_smoothing=label_smoothing
    )


@LOSSES.register("soft_target_ce")
def soft_target_ce(
    *, num_classes: int, label_smoothing: Smoothing = 0.0, weight: ClassWeights = None
) -> nn.Module:
    """Cross-entropy against class probabilities (mixup/cutmix targets).

    Class indices become one-hot, so it also works without mixing."""
    return SoftTargetCrossEntropy(label_smoothing, _class_weights("weight", weight, num_classes))


@LOSSES.register("focal")
def focal(
    *,
    num_classes: int,
    gamma: Annotated[float, NonNegative] = 2.0,
    alpha: Annotated[float | list[float], NonNegative] | None = None,
) -> nn.Module:
    """Multi-class focal loss: `gamma` focuses on hard examples; `alpha` per class."""
    if isinstance(alpha, int | float):
        alpha = [float(alpha)] * num_classes
    return FocalLoss(gamma, _class_weights("alpha", alpha, num_classes))


@LOSSES.register("bce")
def bce(*, num_classes: int, pos_weight: ClassWeights = None) -> nn.Module:
    """Binary cross-entropy per class (sigmoid): multi-label or one-hot targets."""
    return BinaryCrossEntropy(pos_weight=_class_weights("pos_weight", pos_weight, num_classes))


def _regression(loss: nn.Module) -> nn.Module:
    return _SameShape(loss)


class _SameShape(nn.Module):
    """A regression loss on outputs [B, D] and float targets of the same number of values."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss(outputs, targets.view_as(outputs).to(outputs.dtype))


@LOSSES.register("mse")
def mse() -> nn.Module:
    """Mean squared error (regression)."""
    return _regression(nn.MSELoss())


@LOSSES.register("l1")
def l1() -> nn.Module:
    """Mean absolute error (regression)."""
    return _regression(nn.L1Loss())


@LOSSES.register("smooth_l1")
def smooth_l1(*, beta: Annotated[float, NonNegative] = 1.0) -> nn.Module:
    """Huber-like: squared below `beta`, absolute above (regression, robust to outliers)."""
    return _regression(nn.SmoothL1Loss(beta=beta))


class L1Weights(nn.Module):
    """sum |w| over the model's weight matrices and kernels (parameters of 2 or more dims:
    biases and norm scales are left alone, as weight decay leaves them), whatever the batch."""

    def __init__(self, model: nn.Module):
        super().__init__()
        # a plain list, not a submodule: the loss must not hold (or save) a second model
        self.weights = [p for p in model.parameters() if p.ndim > 1 and p.requires_grad]

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.stack([w.abs().sum() for w in self.weights]).sum()


@LOSSES.register("l1_weights", description="L1 penalty on the weights (a loss.terms term)")
def l1_weights(*, model: nn.Module | None = None) -> nn.Module:
    """The L1 norm of the model's weights, as a `loss.terms` term: `{cross_entropy: 1.0,
    l1_weights: 1.0e-5}` (the weight is the penalty's strength)."""
    if model is None:
        raise ConfigError("loss l1_weights needs the model; it is built by the run.")
    return L1Weights(model)


class WeightedSum(nn.Module):
    """`loss=terms`: sum_i w_i * loss_i. Each term's last value is kept (detached) in ``last``,
    so the step can log it as train/loss/<term> and a user sees whether the terms are in the
    same range."""

    def __init__(self, terms: dict[str, tuple[float, nn.Module]]):
        super().__init__()
        self.weights = {name: weight for name, (weight, _) in terms.items()}
        self.terms = nn.ModuleDict({name: loss for name, (_, loss) in terms.items()})
        self.last: dict[str, torch.Tensor] = {}

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        values = {name: loss(outputs, targets) for name, loss in self.terms.items()}
        self.last = {name: v.detach() for name, v in values.items()}
        return sum(self.weights[name] * v for name, v in values.items())  # type: ignore[return-value]


def term_specs(terms: dict[str, Any]) -> dict[str, tuple[float, dict[str, Any]]]:
    """{name: weight or {weight, **arguments}} -> {name: (weight, loss spec)}."""
    out = {}
    for name, value in terms.items():
        args = {"weight": value} if isinstance(value, int | float) else dict(value or {})
        weight = args.pop("weight", 1.0)
        if not isinstance(weight, int | float) or isinstance(weight, bool):
            raise ConfigError(f"loss.terms.{name}.weight={weight!r} must be a number.")
        out[str(name)] = (float(weight), {"name": str(name), **args})
    return out


@LOSSES.register("terms")
def terms(
    *, num_classes: int, terms: dict[str, Any] | None = None, model: nn.Module | None = None
) -> nn.Module:
    """A weighted sum of registered losses: `loss.terms={cross_entropy: 1.0, focal: 0.1}`."""
    if not terms:
        raise ConfigError(
            "loss=terms needs its terms, e.g. loss.terms='{cross_entropy: 1.0, focal: 0.1}' or "
            "'{cross_entropy: 1.0, l1_weights: 1.0e-5}'."
        )
    built = {}
    for name, (weight, spec) in term_specs(terms).items():
        if name == "terms":
            raise ConfigError("loss.terms cannot hold another `terms`; list the losses directly.")
        built[name] = (weight, LOSSES.build(spec, num_classes=num_classes, model=model))
    return WeightedSum(built)


def _loss_names(spec: dict[str, Any]) -> list[str]:
    """The losses a spec builds: its own name, or each term's of `loss=terms`."""
    if spec.get("name") != "terms":
        return [str(spec.get("name"))]
    return [term["name"] for _, term in term_specs(spec.get("terms") or {}).values()]


def check_penalties(spec: dict[str, Any]) -> None:
    """Refuse, before any work, a penalty (l1_weights) as the whole loss: it ignores the data."""
    if spec.get("name") in PENALTIES:
        raise ConfigError(
            f"loss={spec['name']} is a penalty on the model's weights, not a loss on its outputs; "
            f"add it as a term beside the task's loss: loss=terms "
            f"'loss.terms={{cross_entropy: 1.0, {spec['name']}: 1.0e-5}}'."
        )


def check_soft_targets(spec: dict[str, Any], *, mixing: bool) -> None:
    """Refuse, before any work, mixup/cutmix with a loss (or a term) that needs class indices."""
    index_only = [name for name in _loss_names(spec) if name in INDEX_ONLY]
    if mixing and index_only:
        raise ConfigError(
            f"loss={index_only[0]} needs class indices, but augment mixup/cutmix produce soft "
            "targets (class probabilities). Use loss=soft_target_ce (or cross_entropy, or bce), "
            "or turn mixing off (augment.mixup_alpha=0 augment.cutmix_alpha=0)."
        )


def _soft_cross_entropy(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with cross_entropy (itself, or a term, still logged under its own name) built as
    soft_target_ce: the same arguments and value, on class probabilities."""
    if spec["name"] != "terms":
        return {**spec, "name": "soft_target_ce"}
    terms = {
        name: {"weight": weight, **term, "name": "soft_target_ce"}
        if term["name"] == "cross_entropy"
        else {"weight": weight, **term}
        for name, (weight, term) in term_specs(spec["terms"]).items()
    }
    return {**spec, "terms": terms}


def build_loss(
    spec: dict,
    *,
    num_classes: int,
    model: nn.Module | None = None,
    soft_targets: bool = False,
) -> nn.Module:
    """The configured loss; ``model``: the trained model (for penalties on its weights);
    ``soft_targets``: training targets are class probabilities."""
    options = LOSSES.check(spec)
    check_penalties(spec)
    check_soft_targets(spec, mixing=soft_targets)
    if soft_targets and "cross_entropy" in _loss_names(spec):
        spec = _soft_cross_entropy(spec)
        log.info("loss: mixup/cutmix give soft targets, so cross_entropy runs as soft_target_ce")
    loss = LOSSES.build(spec, num_classes=num_classes, model=model)
    return Flooded(loss, float(options.flooding)) if options.flooding else loss
