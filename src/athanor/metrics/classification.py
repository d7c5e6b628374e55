"""Classification metrics from exact counts: sums and counts all-reduced across ranks, then
divided once (never an average of per-batch or per-rank averages)."""

from __future__ import annotations

import torch

from athanor.distributed import all_reduce_sum


class MetricCounts:
    """Running sums for loss, top-1/top-5 hits and the confusion matrix (rows = true class)."""

    def __init__(self, num_classes: int, device: torch.device):
        self.num_classes = num_classes
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.float64, device=device)
        self.top1 = torch.zeros((), dtype=torch.float64, device=device)
        self.top5 = torch.zeros((), dtype=torch.float64, device=device)
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)

    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss_sum: torch.Tensor) -> None:
        k = min(5, self.num_classes)
        topk = logits.topk(k, dim=1).indices  # [B, k]
        hits = topk.eq(labels[:, None])
        self.top1 += hits[:, 0].sum()
        self.top5 += hits.any(dim=1).sum()
        self.loss_sum += loss_sum.double()
        self.count += labels.numel()
        flat = labels * self.num_classes + topk[:, 0]
        self.confusion += torch.bincount(flat, minlength=self.num_classes**2).view_as(
            self.confusion
        )

    def reduce(self) -> MetricCounts:
        packed = torch.cat(
            [
                torch.stack([self.loss_sum, self.count, self.top1, self.top5]),
                self.confusion.flatten(),
            ]
        )
        all_reduce_sum(packed)
        self.loss_sum, self.count, self.top1, self.top5 = packed[:4]
        self.confusion = packed[4:].view_as(self.confusion)
        return self

    def metrics(self, prefix: str) -> dict[str, float]:
        n = max(self.count.item(), 1.0)
        out = {f"{prefix}/loss": self.loss_sum.item() / n, f"{prefix}/acc": self.top1.item() / n}
        if self.num_classes > 5:
            out[f"{prefix}/acc5"] = self.top5.item() / n
        return out

    @staticmethod
    def names(prefix: str, num_classes: int) -> list[str]:
        """The keys ``metrics(prefix)`` returns for a ``num_classes`` problem."""
        return [f"{prefix}/{m}" for m in ("loss", "acc", "acc5") if m != "acc5" or num_classes > 5]

    def per_class_accuracy(self) -> list[float]:
        totals = self.confusion.sum(dim=1).clamp(min=1)
        return (self.confusion.diag() / totals).tolist()
