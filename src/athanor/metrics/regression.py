"""Regression metrics, from sums in the targets' own units: mae, rmse and r2 (per output, then
averaged over outputs). predictions and targets are float [B, D]."""

from __future__ import annotations

import torch

from athanor.metrics.base import METRICS, Metric


class ErrorSums(Metric):
    """Sum of |error| or error^2 over every target value, and how many values."""

    def __init__(self, device: torch.device, name: str, squared: bool):
        super().__init__(device, error=(), count=())
        self.name, self.squared = name, squared

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        error = predictions.double() - targets.double()
        self.states["error"] += (error.square() if self.squared else error.abs()).sum()
        self.states["count"] += error.numel()

    def values(self) -> dict[str, float]:
        mean = self.states["error"].item() / max(self.states["count"].item(), 1.0)
        return {self.name: mean**0.5 if self.squared else mean}


class R2(Metric):
    """1 - SSE / SST per output, from sums of y, y^2 and squared errors (exact when summed)."""

    def __init__(self, device: torch.device, num_outputs: int):
        super().__init__(device, sse=num_outputs, y=num_outputs, y2=num_outputs, count=())

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        y = targets.double()
        self.states["sse"] += (predictions.double() - y).square().sum(0)
        self.states["y"] += y.sum(0)
        self.states["y2"] += y.square().sum(0)
        self.states["count"] += len(y)

    def values(self) -> dict[str, float]:
        s, n = self.states, max(self.states["count"].item(), 1.0)
        sst = (s["y2"] - s["y"].square() / n).clamp(min=1e-12)
        return {"r2": (1 - s["sse"] / sst).mean().item()}


@METRICS.register("mae")
def mae(*, device: torch.device) -> Metric:
    """Mean absolute error, in the targets' units."""
    return ErrorSums(device, "mae", squared=False)


@METRICS.register("rmse")
def rmse(*, device: torch.device) -> Metric:
    """Root mean squared error, in the targets' units."""
    return ErrorSums(device, "rmse", squared=True)


@METRICS.register("r2")
def r2(*, num_outputs: int, device: torch.device) -> Metric:
    """Coefficient of determination per output, averaged over outputs (1 is perfect)."""
    return R2(device, num_outputs)
