"""The evaluation pass: the model over a loader without gradients, into exact metric counts
(summed across ranks by the metrics themselves)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from athanor.data.plain import call_model
from athanor.losses import build_loss
from athanor.metrics.classification import MetricCounts
from athanor.tasks import Task

log = logging.getLogger("athanor")


def predict(model: nn.Module, x: Any, tta_flip: bool = False) -> torch.Tensor:
    """The model's outputs for inputs ``x`` (a tensor, or a tuple / dict of them)."""
    if not isinstance(x, torch.Tensor):
        return call_model(model, x)
    logits = model(x)
    if tta_flip:  # average with the mirror image (test-time augmentation)
        logits = 0.5 * (logits + model(x.flip(-1)))
    return logits


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    task: Task | int,
    device: torch.device,
    *,
    autocast: Callable | None = None,
    tta_flip: bool = False,
    limit: int | None = None,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> MetricCounts:
    """Evaluate on this rank's shard, then all-reduce the counts. The loss is summed per sample
    (loss_fn is a mean, so multiply by the batch size) to get an exact global mean. ``task``: the
    run's task (its metrics, on its predictions and the raw targets), or a class count
    (classification accuracy)."""
    was_training = model.training
    model.eval()
    if isinstance(task, int):
        counts, to_predictions = MetricCounts(task, device), None
    else:
        counts, to_predictions = task.new_counts(device), task.predictions
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
        # the loss on the loss's targets (regression: standardized), the metrics on raw ones
        loss = loss_fn(logits, batch.targets) * len(batch.labels)
        predictions = logits if to_predictions is None else to_predictions(logits)
        counts.update(predictions, batch.labels, loss.detach())
    model.train(was_training)
    return counts.reduce()


def validation_loss(spec: dict[str, Any], num_classes: int, model: nn.Module) -> nn.Module:
    """The configured loss (the `loss` group) as validation computes it: on hard labels, so
    without mixup/cutmix soft targets, and without flooding (a training-time floor). Penalty
    terms (l1_weights) are on ``model``'s weights, as in training."""
    spec = {k: v for k, v in spec.items() if k != "flooding"}
    loss = build_loss(spec, num_classes=num_classes, model=model, soft_targets=False)
    log.info(
        "validation loss: %s (the configured loss, on hard labels, without flooding)", spec["name"]
    )
    return loss
