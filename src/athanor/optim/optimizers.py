"""torch.optim optimizers by name. Every one accepts `optim.no_decay` and `optim.lr_mult`
(see param_groups.py): the builder receives the parameter groups and only sets the base values;
`finalize_groups` then zeroes weight decay and scales the LR per group."""

from __future__ import annotations

import torch

from athanor.optim import OPTIMIZERS

Optimizer = torch.optim.Optimizer


@OPTIMIZERS.register("sgd")
def sgd(
    params,
    *,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5.0e-4,
    nesterov: bool = False,
    dampening: float = 0.0,
) -> Optimizer:
    """SGD with (Nesterov) momentum."""
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
        dampening=dampening,
    )


@OPTIMIZERS.register("adam")
def adam(
    params,
    *,
    lr: float = 1.0e-3,
    weight_decay: float = 0.0,
    betas: list[float] = (0.9, 0.999),  # type: ignore[assignment]
    eps: float = 1.0e-8,
    amsgrad: bool = False,
) -> Optimizer:
    """Adam; weight decay is L2 added to the gradient (use adamw for decoupled decay)."""
    return torch.optim.Adam(
        params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), eps=eps, amsgrad=amsgrad
    )


@OPTIMIZERS.register("adamw")
def adamw(
    params,
    *,
    lr: float = 1.0e-3,
    weight_decay: float = 0.05,
    betas: list[float] = (0.9, 0.999),  # type: ignore[assignment]
    eps: float = 1.0e-8,
    amsgrad: bool = False,
) -> Optimizer:
    """AdamW: Adam with decoupled weight decay."""
    return torch.optim.AdamW(
        params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), eps=eps, amsgrad=amsgrad
    )


@OPTIMIZERS.register("rmsprop")
def rmsprop(
    params,
    *,
    lr: float = 1.0e-2,
    alpha: float = 0.99,
    eps: float = 1.0e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
) -> Optimizer:
    """RMSprop (alpha = smoothing constant of the squared-gradient average)."""
    return torch.optim.RMSprop(
        params,
        lr=lr,
        alpha=alpha,
        eps=eps,
        weight_decay=weight_decay,
        momentum=momentum,
        centered=centered,
    )


@OPTIMIZERS.register("radam")
def radam(
    params,
    *,
    lr: float = 1.0e-3,
    weight_decay: float = 0.0,
    betas: list[float] = (0.9, 0.999),  # type: ignore[assignment]
    eps: float = 1.0e-8,
    decoupled_weight_decay: bool = False,
) -> Optimizer:
    """RAdam: Adam with a rectified adaptive LR early in training."""
    return torch.optim.RAdam(
        params,
        lr=lr,
        weight_decay=weight_decay,
        betas=tuple(betas),
        eps=eps,
        decoupled_weight_decay=decoupled_weight_decay,
    )


@OPTIMIZERS.register("nadam")
def nadam(
    params,
    *,
    lr: float = 2.0e-3,
    weight_decay: float = 0.0,
    betas: list[float] = (0.9, 0.999),  # type: ignore[assignment]
    eps: float = 1.0e-8,
    momentum_decay: float = 4.0e-3,
    decoupled_weight_decay: bool = False,
) -> Optimizer:
    """NAdam: Adam with Nesterov momentum."""
    return torch.optim.NAdam(
        params,
        lr=lr,
        weight_decay=weight_decay,
        betas=tuple(betas),
        eps=eps,
        momentum_decay=momentum_decay,
        decoupled_weight_decay=decoupled_weight_decay,
    )


@OPTIMIZERS.register("adagrad")
def adagrad(
    params,
    *,
    lr: float = 1.0e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1.0e-10,
) -> Optimizer:
    """Adagrad: per-parameter LR scaled by the accumulated squared gradients."""
    return torch.optim.Adagrad(
        params,
        lr=lr,
        lr_decay=lr_decay,
        weight_decay=weight_decay,
        initial_accumulator_value=initial_accumulator_value,
        eps=eps,
    )
