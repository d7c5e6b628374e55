"""Watching one metric: "is this value better than the best so far?", written once.

Early stopping, the best checkpoint, the run record's best result, the plateau schedule and
`athanor report` all ask :func:`is_better` (through a :class:`Monitor`). Monitor names are checked
here too, once, against the metrics a validation logs (:func:`check_monitors`).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from athanor.errors import ConfigError
from athanor.metrics.base import METRICS
from athanor.metrics.classification import MetricCounts

Mode = Literal["min", "max"]


def is_finite(value: Any) -> bool:
    """A real number that can be compared (NaN/Inf and non-numbers never count as results)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_better(value: float, best: float | None, mode: Mode, min_delta: float = 0.0) -> bool:
    """True when ``value`` improves on ``best`` by more than ``min_delta`` (None: anything
    finite is better). A non-finite value is never better."""
    if not is_finite(value):
        return False
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


class Monitor:
    """The best value of metric ``name`` so far, and how many updates since it improved.
    Stateful (``state_dict``/``load_state_dict``): a resumed run goes on from the saved best."""

    def __init__(self, name: str, mode: Mode = "max", min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise ConfigError(f"A monitor's mode must be 'min' or 'max', not {mode!r} ({name}).")
        self.name, self.mode, self.min_delta = name, mode, min_delta
        self.best: float | None = None
        self.stale = 0  # updates since the last improvement

    def update(self, metrics: dict[str, Any]) -> bool:
        """Take one evaluation's metrics; True when the monitored value improved."""
        value = metrics.get(self.name)
        if value is None:
            return False
        if is_better(value, self.best, self.mode, self.min_delta):
            self.best, self.stale = float(value), 0
            return True
        self.stale += 1
        return False

    def best_of(self, values: list[Any]) -> float | None:
        """The best finite value of a list (e.g. a run's history), or None."""
        best = None
        for value in values:
            if is_better(value, best, self.mode):
                best = value
        return best

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "stale": self.stale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.stale = state["best"], int(state["stale"])


def validation_metrics(task: Any, *, ema: bool) -> list[str]:
    """The metric names one validation logs (val/*, and val_ema/* with an EMA). ``task``: a
    bound task (its ``metric_keys(prefix)``), a class count for classification, or None: every
    name some run can log (checks made before the task is bound to the data)."""
    if task is None:
        every = ["loss", "acc", "acc5", *METRICS.names()]
        return [f"{p}/{m}" for p in ("val", *(("val_ema",) if ema else ())) for m in every]
    if isinstance(task, int):
        return MetricCounts.names("val", task) + (
            MetricCounts.names("val_ema", task) if ema else []
        )
    return task.metric_keys("val") + (task.metric_keys("val_ema") if ema else [])


def check_monitors(monitors: dict[str, str | None], task: Any, *, ema: bool) -> None:
    """Refuse a monitor naming no validation metric: it would silently never stop the run, never
    pick best.pt or never lower the LR. ``monitors``: setting key -> metric name (None: unused)."""
    valid = validation_metrics(task, ema=ema)
    for key, value in monitors.items():
        if value is not None and value not in valid:
            hint = " (val_ema/* needs trainer.ema.decay)" if value.startswith("val_ema/") else ""
            raise ConfigError(
                f"{key}={value!r} is not a validation metric of this run, so it is never "
                f"logged{hint}. Valid: {', '.join(valid)}."
            )
