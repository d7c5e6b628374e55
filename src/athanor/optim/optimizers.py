"""torch.optim optimizers by name. Every one accepts `optim.no_decay` and `optim.lr_mult`
(see param_groups.py): the builder receives the parameter groups and only sets the base values;
`finalize_groups` then zeroes weight decay and scales the LR per group."""

from __future__ import annotations

from typing import Annotated

import torch

from athanor.optim.registry import OPTIMIZERS
from athanor.typecheck import Fraction, NonNegative, Positive, Range

LearningRate = Annotated[float, Range(0, low_open=True, what="a learning rate")]  # per step

Optimizer = torch.optim.Optimizer


@OPTIMIZERS.register("sgd")
def sgd(
    params,
    *,
    lr: LearningRate = 0.1,
    momentum: Annotated[float, Fraction] = 0.9,
    weight_decay: Annotated[float, NonNegative] = 5.0e-4,
    nesterov: bool = False,
    dampening: Annotated[float, Fraction] = 0.0,
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
    lr: LearningRate = 1.0e-3,
    weight_decay: Annotated[float, NonNegative] = 0.0,
    betas: Annotated[list[float], Range(0, 1, high_open=True)] = (0.9, 0.999),  # type: ignore[assignment]
    eps: Annotated[float, Positive] = 1.0e-8,
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
    lr: LearningRate = 1.0e-3,
    weight_decay: Annotated[float, NonNegative] = 0.05,
    betas: Annotated[list[float], Range(0, 1, high_open=True)] = (0.9, 0.999),  # type: ignore[assignment]
    eps: Annotated[float, Positive] = 1.0e-8,
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
    lr: LearningRate = 1.0e-2,
    alpha: Annotated[float, Fraction] = 0.99,
    eps: Annotated[float, Positive] = 1.0e-8,
    weight_decay: Annotated[float, NonNegative] = 0.0,
    momentum: Annotated[float, Fraction] = 0.0,
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
    lr: LearningRate = 1.0e-3,
    weight_decay: Annotated[float, NonNegative] = 0.0,
    betas: Annotated[list[float], Range(0, 1, high_open=True)] = (0.9, 0.999),  # type: ignore[assignment]
    eps: Annotated[float, Positive] = 1.0e-8,
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
    lr: LearningRate = 2.0e-3,
    weight_decay: Annotated[float, NonNegative] = 0.0,
    betas: Annotated[list[float], Range(0, 1, high_open=True)] = (0.9, 0.999),  # type: ignore[assignment]
    eps: Annotated[float, Positive] = 1.0e-8,
    momentum_decay: Annotated[float, NonNegative] = 4.0e-3,
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
    lr: LearningRate = 1.0e-2,
    lr_decay: Annotated[float, NonNegative] = 0.0,
    weight_decay: Annotated[float, NonNegative] = 0.0,
    initial_accumulator_value: Annotated[float, NonNegative] = 0.0,
    eps: Annotated[float, Positive] = 1.0e-10,
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
