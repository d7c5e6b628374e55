"""What a task is (see tasks/builtin.py for the three that ship)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from athanor.errors import ConfigError
from athanor.metrics import MetricSet, build_metrics
from athanor.metrics.classification import MetricCounts, TrainAccuracy

log = logging.getLogger("athanor")


@dataclass(frozen=True)
class TargetInfo:
    """What the data says about its targets: integer class indices (``num_classes``) or float
    vectors of ``width`` values; ``mean``/``std`` per value over the training split (floats)."""

    integer: bool
    num_classes: int | None = None
    width: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    # float targets over the training split: their range, and whether every value is 0 or 1
    low: float | None = None
    high: float | None = None
    binary: bool = False
    column: str | None = None  # the table column the targets come from
    names: list[str] | None = None  # the class names, when the data has them


class Task:
    """One kind of prediction. Subclasses set the class attributes and may override the hooks.

    ``losses``: the registered losses that fit (a user's own loss fits every task);
    ``metrics``: METRICS names logged as val/<name>; ``monitor``/``mode``: the checkpoint's
    default (also in conf/task/<name>.yaml, the defaults Hydra composes)."""

    name = "task"
    default_loss = "cross_entropy"
    losses: frozenset[str] = frozenset()
    metrics: tuple[str, ...] = ()
    monitor, mode = "val/loss", "min"
    threshold = 0.5
    mixes_labels = False  # mixup/cutmix can blend its targets (class labels)

    def __init__(self) -> None:
        self.metric_names = self.metrics
        self.num_outputs = 0  # set by ``bind`` once the data is known

    def add_metrics(self, names: tuple[str, ...] | list[str]) -> Task:
        """task.metrics=[...]: registered metrics logged beside the task's own."""
        self.metric_names = tuple(dict.fromkeys((*self.metrics, *names)))
        return self

    def to(self, device: torch.device) -> Task:
        return self

    # -- the data --------------------------------------------------------------------------------
    def bind(self, info: TargetInfo) -> int:
        """Check the targets fit this task; -> the number of model outputs."""
        raise NotImplementedError

    def describe(self) -> str:
        return (
            f"task {self.name}: {self.num_outputs} outputs, metrics {', '.join(self.metric_names)}"
        )

    def loss_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """Targets as the loss sees them (regression: standardized); metrics see the raw ones."""
        return targets

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """Model outputs -> what the metrics compare with the raw targets."""
        return outputs

    # -- checks ----------------------------------------------------------------------------------
    def check_loss(self, loss_name: str, known: set[str]) -> None:
        """Refuse one of the ``known`` losses (athanor's own) that does not fit, before any work."""
        if loss_name in known and loss_name not in self.losses:
            raise ConfigError(
                f"loss={loss_name} does not fit task={self.name}. Losses that fit: "
                f"{', '.join(sorted(self.losses))} (or a loss of your own)."
            )

    def check_metrics(self, known: set[str]) -> None:
        fit = self.fitting_metrics
        for name in self.metric_names:
            if name in known and fit is not None and name not in fit:
                raise ConfigError(
                    f"metric {name!r} does not fit task={self.name}; metrics that fit: "
                    f"{', '.join(sorted(fit))} (or a metric of your own)."
                )

    fitting_metrics: frozenset[str] | None = None

    def train_metric(self) -> TrainAccuracy | None:
        """What the task counts from the training steps' outputs, a logging window at a time
        (train/acc for classification), or None: the step then keeps no outputs."""
        return None

    def initial_loss(self, loss_name: str) -> tuple[float, str] | None:
        """(what a fresh model's loss should be near, why), or None when unknown."""
        return None

    # -- metrics ---------------------------------------------------------------------------------
    def new_counts(self, device: torch.device) -> MetricCounts:
        metrics: MetricSet = build_metrics(
            self.metric_names, num_outputs=self.num_outputs, device=device, threshold=self.threshold
        )
        return MetricCounts(self.num_outputs, device, metrics)

    def metric_keys(self, prefix: str) -> list[str]:
        """The keys one evaluation logs (checked against monitors before work starts)."""
        counts = self.new_counts(torch.device("cpu"))
        return list(counts.metrics(prefix))

    # -- checkpoint ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
