"""The evaluation pass: the model over a loader without gradients, into exact metric counts
(summed across ranks by the metrics themselves)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from athanor.errors import ConfigError
from athanor.metrics.classification import MetricCounts


def predict(model: nn.Module, x: torch.Tensor, tta_flip: bool = False) -> torch.Tensor:
    logits = model(x)
    if tta_flip:  # average with the mirror image (test-time augmentation)
        logits = 0.5 * (logits + model(x.flip(-1)))
    return logits


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    num_classes: int,
    device: torch.device,
    *,
    autocast: Callable | None = None,
    tta_flip: bool = False,
    limit: int | None = None,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> MetricCounts:
    """Evaluate on this rank's shard, then all-reduce the counts. The loss is summed per sample
    (loss_fn is a mean, so multiply by the batch size) to get an exact global mean."""
    was_training = model.training
    model.eval()
    counts = MetricCounts(num_classes, device)
    for i, batch in enumerate(batches):
        if limit is not None and i >= limit:
            break
        x = prepare(batch.inputs) if prepare else batch.inputs
        if autocast is not None:
            with autocast():
                logits = predict(model, x, tta_flip)
        else:
            logits = predict(model, x, tta_flip)
        logits = logits.float()
        loss = loss_fn(logits, batch.labels) * batch.labels.numel()
        counts.update(logits, batch.labels, loss.detach())
    model.train(was_training)
    return counts.reduce()


def check_monitors(monitors: dict[str, str | None], num_classes: int, *, ema: bool) -> None:
    """A monitor naming no validation metric would silently never stop or never pick best.pt.
    ``monitors``: setting key -> metric name (None = unused)."""
    valid = MetricCounts.names("val", num_classes)
    valid += MetricCounts.names("val_ema", num_classes) if ema else []
    for key, value in monitors.items():
        if value is not None and value not in valid:
            hint = " (val_ema/* needs trainer.ema.decay)" if value.startswith("val_ema/") else ""
            raise ConfigError(
                f"{key}={value!r} is not a validation metric of this run{hint}. "
                f"Valid: {', '.join(valid)}."
            )
