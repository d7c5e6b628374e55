"""What one optimizer step hands its observers (engine/step.py makes it, engine/loop.py passes it
to the reporter's ``on_step``): device tensors only, so observing a step costs no sync."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class StepResult:
    loss: torch.Tensor  # mean loss over the micro-batches (a detached device tensor: no sync)
    count: int  # samples in this step
    grad_norm: torch.Tensor | None  # total norm before clipping; None when nobody asked for it
    # each micro-batch's (detached outputs [B, K], targets [B]), for the task's training metric
    # (tasks/base.py ``Task.train_metric``) to count over its logging window; () when it has none
    outputs: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()
    skipped: bool = False  # a non-finite step that trainer.skip_nonfinite skipped
    terms: dict[str, torch.Tensor] | None = None  # loss=terms: each term (last micro-batch)
