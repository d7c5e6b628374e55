"""Learning-rate schedules, stepped once per optimizer step (epochs are converted to steps)."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    SequentialLR,
)

from athanor.errors import ConfigError
from athanor.optim import SCHEDULERS


def _constant(step: int) -> float:
    return 1.0


@SCHEDULERS.register("none")
def constant(optimizer, *, total_steps: int, steps_per_epoch: int) -> LRScheduler:
    """Constant learning rate (warmup still applies when set)."""
    del total_steps, steps_per_epoch
    return LambdaLR(optimizer, _constant)


@SCHEDULERS.register("cosine")
def cosine(
    optimizer, *, total_steps: int, steps_per_epoch: int, min_lr: float = 0.0
) -> LRScheduler:
    """Cosine decay from the base LR to `min_lr` over the run (after warmup)."""
    del steps_per_epoch
    return CosineAnnealingLR(optimizer, T_max=max(1, total_steps), eta_min=min_lr)


def warmup_steps_from(shared: dict, steps_per_epoch: int, total_steps: int) -> tuple[int, float]:
    """-> (warmup optimizer steps, start factor) from scheduler.warmup_{epochs,steps,start_factor}."""
    epochs, steps = shared.get("warmup_epochs"), shared.get("warmup_steps")
    if epochs is not None and steps is not None:
        raise ConfigError(
            "Set scheduler.warmup_epochs or scheduler.warmup_steps, not both "
            f"(got warmup_epochs={epochs}, warmup_steps={steps})."
        )
    warmup = int(steps if steps is not None else round((epochs or 0) * steps_per_epoch))
    factor = float(shared.get("warmup_start_factor") or 0.01)
    if warmup < 0 or not 0 < factor <= 1:
        raise ConfigError(
            f"Warmup must be >= 0 steps with a start factor in (0, 1]; got {warmup} steps, "
            f"factor {factor}."
        )
    if warmup >= total_steps:
        raise ConfigError(
            f"Warmup of {warmup} optimizer steps is not shorter than the whole run "
            f"({total_steps} steps); lower scheduler.warmup_epochs/warmup_steps."
        )
    return warmup, factor


def build_schedule(
    spec: dict, optimizer: torch.optim.Optimizer, *, total_steps: int, steps_per_epoch: int
) -> LRScheduler:
    """The configured schedule for the steps after warmup, preceded by a linear warmup."""
    _, _, shared = SCHEDULERS.split(spec)
    warmup, factor = warmup_steps_from(shared, steps_per_epoch, total_steps)
    main = SCHEDULERS.build(
        spec, optimizer=optimizer, total_steps=total_steps - warmup, steps_per_epoch=steps_per_epoch
    )
    if warmup == 0:
        return main
    ramp = LinearLR(optimizer, start_factor=factor, end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def total_optimizer_steps(epochs: int, steps_per_epoch: int, max_steps: int | None) -> int:
    total = epochs * steps_per_epoch
    return min(total, max_steps) if max_steps else total
