"""The tasks that ship: classification (one class per sample), multilabel (multi-hot targets,
one sigmoid per class) and regression (float targets of any width, standardized for the loss)."""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch

from athanor.errors import ConfigError
from athanor.metrics.classification import TrainAccuracy
from athanor.tasks.base import TargetInfo, Task
from athanor.tasks.registry import TASKS
from athanor.typecheck import Range


class Classification(Task):
    name = "classification"
    default_loss = "cross_entropy"
    losses = frozenset({"cross_entropy", "soft_target_ce", "focal", "bce"})
    metrics = ("acc",)
    fitting_metrics = frozenset({"acc"})
    monitor, mode = "val/acc", "max"
    mixes_labels = True

    def bind(self, info: TargetInfo) -> int:
        if not info.integer:
            raise ConfigError(
                f"task=classification needs integer class targets, but the targets are float "
                f"vectors of {info.width} values: use task=regression (or task=multilabel for "
                "multi-hot targets)."
            )
        self.num_outputs = int(info.num_classes or 0)
        return self.num_outputs

    def train_metric(self) -> TrainAccuracy:
        return TrainAccuracy()

    def initial_loss(self, loss_name: str) -> tuple[float, str] | None:
        k = self.num_outputs
        if loss_name in ("cross_entropy", "soft_target_ce"):
            return math.log(k), f"ln({k}) for a fresh {k}-class softmax"
        if loss_name == "bce":
            return math.log(2), "ln(2) per output for fresh sigmoids"
        return None


class MultiLabel(Task):
    name = "multilabel"
    default_loss = "bce"
    losses = frozenset({"bce"})
    metrics = ("map", "f1")
    fitting_metrics = frozenset({"map", "f1"})
    monitor, mode = "val/map", "max"

    def __init__(self, threshold: float, soft_labels: bool = False):
        super().__init__()
        self.threshold, self.soft_labels = threshold, soft_labels

    def bind(self, info: TargetInfo) -> int:
        if info.integer:
            raise ConfigError(
                "task=multilabel needs multi-hot float targets [K] (1.0 for each label present), "
                "but the targets are class indices: use task=classification."
            )
        if info.low is not None and not (info.binary or self._soft_fits(info)):
            raise ConfigError(
                f"task=multilabel needs multi-hot targets of 0 or 1, but the training targets "
                f"range from {info.low:g} to {info.high:g}"
                + (
                    ". Soft labels must lie in [0, 1]."
                    if self.soft_labels
                    else ". Fix the targets, or pass task.soft_labels=true for soft labels in "
                    "[0, 1]."
                )
            )
        self.num_outputs = int(info.width or 0)
        return self.num_outputs

    def _soft_fits(self, info: TargetInfo) -> bool:
        return self.soft_labels and 0.0 <= float(info.low) and float(info.high) <= 1.0

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.sigmoid()

    def initial_loss(self, loss_name: str) -> tuple[float, str] | None:
        return (math.log(2), "ln(2) per output for fresh sigmoids") if loss_name == "bce" else None


class Regression(Task):
    """Targets standardized with the training split's mean/std for the loss; predictions and
    metrics back in the targets' own units."""

    name = "regression"
    default_loss = "mse"
    losses = frozenset({"mse", "l1", "smooth_l1"})
    metrics = ("mae", "rmse", "r2")
    fitting_metrics = frozenset({"mae", "rmse", "r2"})
    monitor, mode = "val/mae", "min"

    def __init__(self, standardize: bool):
        super().__init__()
        self.standardize = standardize
        self.mean = self.std = torch.zeros(0)

    def bind(self, info: TargetInfo) -> int:
        if info.integer and info.column is not None:
            shown = ", ".join(repr(n) for n in (info.names or [])[:3])
            raise ConfigError(
                f"task=regression needs numeric targets, but data.target={info.column} holds "
                f"classes ({shown}, ...): text, or whole numbers read as classes. Choose a numeric "
                "column with data.target=, pass data.target_type=float for whole numbers, or use "
                "task=classification."
            )
        if info.integer and info.width is None:
            raise ConfigError(
                "task=regression needs float targets, but the targets are integer class "
                "indices: use task=classification (or give float targets)."
            )
        self.num_outputs = int(info.width or 1)
        if self.standardize and info.mean is not None:
            self.mean = torch.tensor(info.mean, dtype=torch.float32)
            self.std = torch.tensor(info.std, dtype=torch.float32).clamp(min=1e-8)
        else:
            self.mean = torch.zeros(self.num_outputs)
            self.std = torch.ones(self.num_outputs)
        return self.num_outputs

    def describe(self) -> str:
        scale = ""
        if self.standardize:
            stats = ", ".join(f"{m:.4g}±{s:.4g}" for m, s in zip(self.mean, self.std, strict=True))
            scale = f"; targets standardized for the loss (train mean±std {stats})"
        return super().describe() + scale

    def to(self, device: torch.device) -> Regression:
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    def loss_targets(self, targets: torch.Tensor) -> torch.Tensor:
        return (targets - self.mean) / self.std

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs * self.std + self.mean

    def initial_loss(self, loss_name: str) -> tuple[float, str] | None:
        if not self.standardize:
            return None
        expected = {"mse": 1.0, "l1": math.sqrt(2 / math.pi), "smooth_l1": 0.4}.get(loss_name)
        why = (
            "the variance of standardized targets"
            if loss_name == "mse"
            else "unit-variance targets"
        )
        return None if expected is None else (expected, why)

    def state_dict(self) -> dict[str, Any]:
        return {"target_mean": self.mean.cpu(), "target_std": self.std.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.mean.device
        self.mean, self.std = state["target_mean"].to(device), state["target_std"].to(device)


Threshold = Annotated[float, Range(0, 1, low_open=True, high_open=True)]


@TASKS.register("classification")
def classification() -> Task:
    """One class per sample: top-1 (top-5), per-class accuracy, confusion matrix."""
    return Classification()


@TASKS.register("multilabel")
def multilabel(*, threshold: Threshold = 0.5, soft_labels: bool = False) -> Task:
    """Multi-hot targets, one sigmoid per class: val/map (macro AP) and val/f1 at the threshold.
    Targets must be 0 or 1; ``soft_labels`` admits any value in [0, 1]."""
    return MultiLabel(threshold, soft_labels)


@TASKS.register("regression")
def regression(*, standardize: bool = True) -> Task:
    """Float targets of any width: val/mae, val/rmse, val/r2 in the targets' own units."""
    return Regression(standardize)
