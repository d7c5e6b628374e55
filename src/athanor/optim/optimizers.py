"""torch.optim optimizers by name. Every one accepts `optim.no_decay` and `optim.lr_mult`
(see param_groups.py), applied before the builder is called."""

from __future__ import annotations

import torch

from athanor.optim import OPTIMIZERS


@OPTIMIZERS.register("sgd")
def sgd(
    params,
    *,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5.0e-4,
    nesterov: bool = False,
    dampening: float = 0.0,
) -> torch.optim.Optimizer:
    """SGD with (Nesterov) momentum."""
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
        dampening=dampening,
    )


@OPTIMIZERS.register("adamw")
def adamw(
    params,
    *,
    lr: float = 1.0e-3,
    weight_decay: float = 0.05,
    betas: list[float] = (0.9, 0.999),
    eps: float = 1.0e-8,  # type: ignore[assignment]
) -> torch.optim.Optimizer:
    """AdamW: Adam with decoupled weight decay."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), eps=eps)
