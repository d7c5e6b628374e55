"""Multi-label metrics: predictions are per-class probabilities [B, K] (sigmoid), targets
multi-hot [B, K].

``map`` (macro average precision) is computed from per-class histograms of the positive and
negative scores over ``BINS`` equal probability bins: sums, so exact across ranks and constant in
memory (torchmetrics' binned variant does the same); the binning rounds scores to 1/BINS.
``f1`` is micro-averaged at ``task.threshold``."""

from __future__ import annotations

import torch

from athanor.metrics.base import METRICS, Metric

BINS = 1000


class AveragePrecision(Metric):
    def __init__(self, device: torch.device, num_outputs: int):
        super().__init__(device, pos=(num_outputs, BINS), neg=(num_outputs, BINS))
        self.offsets = torch.arange(num_outputs, device=device)[None, :] * BINS

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        k = predictions.shape[1]
        bins = (predictions.clamp(0, 1) * (BINS - 1)).round().long() + self.offsets  # [B, K]
        positive = targets > 0.5
        for key, mask in (("pos", positive), ("neg", ~positive)):
            counts = torch.bincount(bins[mask], minlength=k * BINS)
            self.states[key] += counts.view(k, BINS)

    def values(self) -> dict[str, float]:
        # sweep the threshold from the highest bin down: precision at each recall step
        pos = self.states["pos"].flip(1).cumsum(1)  # true positives above each threshold
        neg = self.states["neg"].flip(1).cumsum(1)
        total = pos[:, -1:]
        precision = pos / (pos + neg).clamp(min=1)
        recall_step = torch.diff(pos, dim=1, prepend=torch.zeros_like(pos[:, :1])) / total.clamp(
            min=1
        )
        ap = (precision * recall_step).sum(1)
        has_positives = total.squeeze(1) > 0  # a class never positive has no AP
        return {"map": ap[has_positives].mean().item() if has_positives.any() else 0.0}


class F1(Metric):
    def __init__(self, device: torch.device, threshold: float):
        super().__init__(device, tp=(), fp=(), fn=())
        self.threshold = threshold

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        predicted, actual = predictions >= self.threshold, targets > 0.5
        self.states["tp"] += (predicted & actual).sum()
        self.states["fp"] += (predicted & ~actual).sum()
        self.states["fn"] += (~predicted & actual).sum()

    def values(self) -> dict[str, float]:
        s = self.states
        return {"f1": (2 * s["tp"] / (2 * s["tp"] + s["fp"] + s["fn"]).clamp(min=1)).item()}


@METRICS.register("map")
def mean_average_precision(*, num_outputs: int, device: torch.device) -> Metric:
    """Macro average precision over the classes that have positives (binned scores)."""
    return AveragePrecision(device, num_outputs)


@METRICS.register("f1")
def f1(*, device: torch.device, threshold: float) -> Metric:
    """Micro-averaged F1 of the predictions at or above task.threshold."""
    return F1(device, threshold)
