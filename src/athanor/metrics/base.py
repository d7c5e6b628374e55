"""The METRICS registry and what a metric is: running sums (float64 tensors) updated per batch,
summed across ranks once, then turned into values. Summing states, never averaging per-batch or
per-rank results, is what keeps every metric exact under DDP.

A metric builder receives the runtime facts its signature names (``num_outputs``, ``device``,
``threshold``) and returns a :class:`Metric`. Users register their own the same way::

    @METRICS.register("max_error")
    def max_error(*, device): ...
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from athanor.distributed import all_reduce_sum
from athanor.registry import Registry

METRICS: Registry = Registry("metric", runtime=("num_outputs", "device", "threshold"))


class Metric:
    """Named sums over the evaluated samples. ``update(predictions, targets)`` adds a batch;
    ``values()`` reads the (reduced) sums. ``states`` holds every tensor that is summed."""

    def __init__(self, device: torch.device, **shapes: int | tuple[int, ...]):
        self.states = {
            k: torch.zeros(shape, dtype=torch.float64, device=device) for k, shape in shapes.items()
        }

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        raise NotImplementedError

    def values(self) -> dict[str, float]:
        """{metric name (no prefix): value} from the sums."""
        raise NotImplementedError


class MetricSet:
    """The metrics of one evaluation: updated together, all-reduced in one collective."""

    def __init__(self, metrics: dict[str, Metric]):
        self.metrics = metrics

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        for metric in self.metrics.values():
            metric.update(predictions, targets)

    def reduce(self) -> MetricSet:
        states = [t for m in self.metrics.values() for t in m.states.values()]
        if not states:
            return self
        packed = all_reduce_sum(torch.cat([t.flatten() for t in states]))
        offset = 0
        for t in states:  # write the global sums back in place
            t.copy_(packed[offset : offset + t.numel()].view_as(t))
            offset += t.numel()
        return self

    def values(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}/{k}": v for m in self.metrics.values() for k, v in m.values().items()}


def build_metrics(
    names: Iterable[str], *, num_outputs: int, device: torch.device, threshold: float = 0.5
) -> MetricSet:
    """The named metrics, built for this run's outputs."""
    built = {
        name: METRICS.build(
            {"name": name}, num_outputs=num_outputs, device=device, threshold=threshold
        )
        for name in names
    }
    return MetricSet(built)
