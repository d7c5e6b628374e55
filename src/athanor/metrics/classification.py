"""Classification metrics from exact counts, and the running sums of one evaluation.

``Accuracy`` (registered as ``acc``: top-1, and top-5 beyond 5 classes, from a confusion matrix)
keeps sums that are all-reduced across ranks, then divided once (never an average of per-batch or
per-rank averages). ``MetricCounts`` is one evaluation: the loss sum plus the task's metrics.
"""

from __future__ import annotations

import torch

from athanor.metrics.base import METRICS, Metric, MetricSet


def top1_hits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Top-1 hits of logits [N, K] (or [N, K, ...]) against labels [N] (device tensor, no sync;
    argmax is an integer op: no graph to detach from)."""
    return (logits.argmax(1) == labels).sum()


# logits elements a logging window keeps for its top-1 count before it counts them early (~16 MB
# of float32: a huge log_every with many classes must not hold every step's logits)
HELD_LOGITS = 1 << 22


class TrainAccuracy:
    """train/acc over a logging window: the steps' detached (logits [B, K], labels [B]) are held
    and counted in one argmax when the window is logged (3 ops a window instead of a step)."""

    name = "train/acc"

    def __init__(self) -> None:
        self.held: list[tuple[torch.Tensor, torch.Tensor]] = []  # not counted yet
        self.held_elements = 0
        self.hits: list[torch.Tensor] = []  # counted already (device tensors)

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.held.append((logits, labels))
        self.held_elements += logits.numel()
        if self.held_elements > HELD_LOGITS:
            self._count_held()

    def total(self) -> torch.Tensor | int:
        """The window's hits (a device tensor; 0 for an empty window); the window restarts."""
        self._count_held()
        hits, self.hits = self.hits, []
        if not hits:
            return 0
        return hits[0] if len(hits) == 1 else torch.stack(hits).sum()

    def _count_held(self) -> None:
        if not self.held:
            return
        if len(self.held) == 1:
            logits, labels = self.held[0]
        else:
            logits = torch.cat([logits for logits, _ in self.held])
            labels = torch.cat([labels for _, labels in self.held])
        self.hits.append(top1_hits(logits, labels))
        self.held, self.held_elements = [], 0


class Accuracy(Metric):
    """Top-1/top-5 hits and the confusion matrix (rows = true class) of logits [B, K]."""

    def __init__(self, num_classes: int, device: torch.device):
        super().__init__(device, top1=(), top5=(), count=(), confusion=(num_classes, num_classes))
        self.num_classes = num_classes

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        k = min(5, self.num_classes)
        topk = predictions.topk(k, dim=1).indices  # [B, k]
        hits = topk.eq(targets[:, None])
        s = self.states
        s["top1"] += hits[:, 0].sum()
        s["top5"] += hits.any(dim=1).sum()
        s["count"] += targets.numel()
        flat = targets * self.num_classes + topk[:, 0]
        s["confusion"] += torch.bincount(flat, minlength=self.num_classes**2).view_as(
            s["confusion"]
        )

    def values(self) -> dict[str, float]:
        n = max(self.states["count"].item(), 1.0)
        out = {"acc": self.states["top1"].item() / n}
        if self.num_classes > 5:
            out["acc5"] = self.states["top5"].item() / n
        return out

    def per_class_accuracy(self) -> list[float]:
        confusion = self.states["confusion"]
        return (confusion.diag() / confusion.sum(dim=1).clamp(min=1)).tolist()


@METRICS.register("acc")
def accuracy(*, num_outputs: int, device: torch.device) -> Metric:
    """Top-1 accuracy (and acc5, top-5, beyond 5 classes), with a confusion matrix."""
    return Accuracy(num_outputs, device)


class MetricCounts:
    """One evaluation's running sums: the loss (summed per sample) and the task's metrics
    (classification accuracy by default). ``reduce`` sums them across ranks in one go."""

    def __init__(self, num_classes: int, device: torch.device, metrics: MetricSet | None = None):
        self.num_classes = num_classes
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.float64, device=device)
        self.set = metrics or MetricSet({"acc": Accuracy(num_classes, device)})

    def update(
        self, predictions: torch.Tensor, targets: torch.Tensor, loss_sum: torch.Tensor
    ) -> None:
        self.loss_sum += loss_sum.double()
        self.count += len(targets)
        self.set.update(predictions, targets)

    def reduce(self) -> MetricCounts:
        extra = MetricSet({"_loss": _Sums(self.loss_sum, self.count)})
        MetricSet({**self.set.metrics, **extra.metrics}).reduce()
        return self

    def metrics(self, prefix: str) -> dict[str, float]:
        n = max(self.count.item(), 1.0)
        return {f"{prefix}/loss": self.loss_sum.item() / n, **self.set.values(prefix)}

    @staticmethod
    def names(prefix: str, num_classes: int) -> list[str]:
        """The keys ``metrics(prefix)`` returns for a ``num_classes`` classification."""
        return [f"{prefix}/{m}" for m in ("loss", "acc", "acc5") if m != "acc5" or num_classes > 5]

    @property
    def accuracy(self) -> Accuracy | None:
        return next((m for m in self.set.metrics.values() if isinstance(m, Accuracy)), None)

    @property
    def confusion(self) -> torch.Tensor | None:
        return None if self.accuracy is None else self.accuracy.states["confusion"]

    def per_class_accuracy(self) -> list[float] | None:
        return None if self.accuracy is None else self.accuracy.per_class_accuracy()


class _Sums(Metric):
    """The loss sum and sample count, reduced with the metrics (no values of its own)."""

    def __init__(self, loss_sum: torch.Tensor, count: torch.Tensor):
        self.states = {"loss_sum": loss_sum, "count": count}

    def values(self) -> dict[str, float]:
        return {}
