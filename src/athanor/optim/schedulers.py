"""Learning-rate schedules, stepped once per optimizer step, so they stay right under gradient
accumulation and `trainer.max_steps`. Arguments in epochs are converted with the run's optimizer
steps per epoch. Any schedule can be preceded by a linear warmup (torch LinearLR + SequentialLR).

A builder receives the optimizer and a ``StepPlan`` and returns a torch scheduler that covers the
steps after the warmup. ``build_schedule`` wraps the result in a ``Schedule``, the one object the
loop drives: ``step()`` after every optimizer step and ``step_validation(metrics)`` after every
validation (only `plateau` listens to the latter).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    PolynomialLR,
    ReduceLROnPlateau,
    SequentialLR,
)

from athanor.config.groups import WarmupOptions
from athanor.errors import ConfigError
from athanor.metrics.monitor import check_monitors, is_better
from athanor.optim.registry import SCHEDULERS
from athanor.typecheck import Fraction, NonNegative, Positive, Range

log = logging.getLogger(__name__)

Epochs = Annotated[float, Positive]  # in epochs from the start of the run
Factor = Annotated[float, Range(0, 1, low_open=True)]  # LR multiplier per decay
MinLR = Annotated[float, NonNegative]  # an absolute LR floor


@dataclass(frozen=True)
class StepPlan:
    """The run's length in optimizer steps, as a schedule needs it."""

    total_steps: int  # optimizer steps in the whole run (epochs x steps_per_epoch, or max_steps)
    steps_per_epoch: int  # optimizer steps per epoch (batches // trainer.accumulate)
    warmup_steps: int = 0  # linear warmup before the schedule starts

    @property
    def steps(self) -> int:
        """Optimizer steps the schedule itself spans (after the warmup)."""
        return self.total_steps - self.warmup_steps

    def epoch_to_step(self, epoch: float, key: str) -> int:
        """An epoch counted from the start of the run -> a step counted from the end of warmup."""
        step = round(epoch * self.steps_per_epoch) - self.warmup_steps
        if step <= 0:
            raise ConfigError(
                f"{key}={epoch:g} epochs falls inside the warmup ({self.warmup_steps} optimizer "
                f"steps = {self.warmup_steps / self.steps_per_epoch:g} epochs); move it later or "
                "shorten scheduler.warmup_epochs/warmup_steps."
            )
        return step


@SCHEDULERS.register("none")
def constant(optimizer, *, plan: StepPlan) -> None:
    """Constant learning rate (warmup still applies when set). No scheduler object at all: a
    constant LR needs nothing stepped after every optimizer step."""
    del optimizer, plan


@SCHEDULERS.register("step")
def step_decay(
    optimizer, *, plan: StepPlan, step_size: Epochs = 30.0, gamma: Factor = 0.1
) -> LRScheduler:
    """LR x `gamma` every `step_size` epochs (counted from the start of the run)."""
    epochs = plan.total_steps / plan.steps_per_epoch
    drops = [step_size * k for k in range(1, int(epochs / step_size) + 1)]
    milestones = [plan.epoch_to_step(e, "scheduler.step_size") for e in drops]
    return MultiStepLR(optimizer, milestones=milestones or [plan.steps + 1], gamma=gamma)


@SCHEDULERS.register("multistep")
def multistep(
    optimizer,
    *,
    plan: StepPlan,
    milestones: Annotated[list[float], Positive] = (30.0, 60.0, 80.0),  # type: ignore[assignment]
    gamma: Factor = 0.1,
) -> LRScheduler:
    """LR x `gamma` at each milestone (epochs from the start of the run)."""
    if list(milestones) != sorted(milestones):
        raise ConfigError(f"scheduler.milestones={list(milestones)} must be increasing epochs.")
    steps = [plan.epoch_to_step(e, "scheduler.milestones") for e in milestones]
    return MultiStepLR(optimizer, milestones=steps, gamma=gamma)


@SCHEDULERS.register("exponential")
def exponential(optimizer, *, plan: StepPlan, gamma: Factor = 0.95) -> LRScheduler:
    """LR x `gamma` per epoch, applied smoothly per optimizer step."""
    return ExponentialLR(optimizer, gamma=gamma ** (1.0 / plan.steps_per_epoch))


@SCHEDULERS.register("cosine")
def cosine(optimizer, *, plan: StepPlan, min_lr: MinLR = 0.0) -> LRScheduler:
    """Cosine decay from the base LR to `min_lr` over the run (after warmup)."""
    return CosineAnnealingLR(optimizer, T_max=max(1, plan.steps), eta_min=min_lr)


@SCHEDULERS.register("poly")
def poly(optimizer, *, plan: StepPlan, power: Annotated[float, NonNegative] = 2.0) -> LRScheduler:
    """Polynomial decay to 0 over the run: base x (1 - t/T)^power."""
    return PolynomialLR(optimizer, total_iters=max(1, plan.steps), power=power)


@SCHEDULERS.register("linear")
def linear(
    optimizer, *, plan: StepPlan, end_factor: Annotated[float, Fraction] = 0.0
) -> LRScheduler:
    """Linear decay to `end_factor` x base LR over the run (after warmup)."""
    return LinearLR(
        optimizer, start_factor=1.0, end_factor=end_factor, total_iters=max(1, plan.steps)
    )


@SCHEDULERS.register("onecycle")
def onecycle(
    optimizer,
    *,
    plan: StepPlan,
    max_lr: Annotated[float, Positive] | None = None,
    pct_start: Annotated[float, Range(0, 1, low_open=True, high_open=True)] = 0.3,
    div_factor: Annotated[float, Positive] = 25.0,
    final_div_factor: Annotated[float, Positive] = 1.0e4,
    anneal_strategy: Literal["cos", "linear"] = "cos",
    three_phase: bool = False,
) -> LRScheduler:
    """1cycle (Smith 2018): up to max_lr over `pct_start` of the run, then down to ~0.

    Starts at max_lr/div_factor, ends at max_lr/(div_factor x final_div_factor); max_lr defaults
    to each parameter group's optim LR."""
    if plan.warmup_steps:
        raise ConfigError(
            "scheduler=onecycle has its own warmup (scheduler.pct_start of the run); remove "
            "scheduler.warmup_epochs/warmup_steps."
        )
    peaks = [
        (max_lr * g.get("lr_mult", 1.0)) if max_lr is not None else g["lr"]
        for g in optimizer.param_groups
    ]
    return OneCycleLR(
        optimizer,
        max_lr=peaks,
        total_steps=plan.total_steps,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        anneal_strategy=anneal_strategy,
        three_phase=three_phase,
        cycle_momentum=False,  # leave the optimizer's momentum/betas as configured
    )


class Plateau(ReduceLROnPlateau):
    """ReduceLROnPlateau that knows which logged validation metric it watches."""

    def __init__(self, optimizer, *, monitor: str, **kwargs: Any):
        super().__init__(optimizer, **kwargs)
        self.monitor = monitor

    def is_better(self, a: float, best: float) -> bool:
        """The house's one "is this better?" (a NaN never improves), with torch's threshold."""
        if not math.isfinite(best):  # torch starts from -inf/inf: anything finite is better
            return is_better(a, None, self.mode)
        delta = self.threshold * abs(best) if self.threshold_mode == "rel" else self.threshold
        return is_better(a, best, self.mode, delta)


@SCHEDULERS.register("plateau")
def plateau(
    optimizer,
    *,
    plan: StepPlan,
    monitor: str = "val/loss",
    mode: Literal["min", "max"] = "min",
    factor: Annotated[float, Range(0, 1, low_open=True, high_open=True)] = 0.1,
    patience: Annotated[int, NonNegative] = 10,
    threshold: Annotated[float, NonNegative] = 1.0e-4,
    cooldown: Annotated[int, NonNegative] = 0,
    min_lr: MinLR = 0.0,
) -> ReduceLROnPlateau:
    """LR x `factor` when `monitor` has not improved for `patience` validations."""
    del plan
    return Plateau(
        optimizer,
        monitor=monitor,
        mode=mode,
        factor=factor,
        patience=patience,
        threshold=threshold,
        cooldown=cooldown,
        min_lr=min_lr,
    )


def check_monitor(spec: dict, *, ema: bool) -> None:
    """Refuse, before any work, a plateau schedule watching a metric the loop never logs."""
    if spec.get("name") != "plateau":
        return
    # the task and data are not bound yet: every name some run logs (checked again at build)
    check_monitors({"scheduler.monitor": spec.get("monitor", "val/loss")}, None, ema=ema)


class Schedule:
    """The LR schedule as the loop drives it: ``step()`` after every optimizer step,
    ``step_validation(metrics)`` after every validation."""

    def __init__(self, per_step: LRScheduler | None, on_validation: Plateau | None = None):
        self.per_step, self.on_validation = per_step, on_validation

    def step(self) -> None:
        if self.per_step is not None:
            self.per_step.step()

    def step_validation(self, metrics: dict[str, float]) -> None:
        if self.on_validation is None or not metrics:
            return
        monitor = self.on_validation.monitor
        if monitor not in metrics:
            raise ConfigError(
                f"scheduler.monitor={monitor!r} was not logged by the validation (logged: "
                f"{', '.join(sorted(metrics))}); acc5 needs more than 5 classes."
            )
        self.on_validation.step(metrics[monitor])

    def state_dict(self) -> dict[str, Any]:
        return {
            "per_step": self.per_step.state_dict() if self.per_step is not None else None,
            "on_validation": (
                self.on_validation.state_dict() if self.on_validation is not None else None
            ),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.per_step is not None and state.get("per_step") is not None:
            self.per_step.load_state_dict(state["per_step"])
        if self.on_validation is not None and state.get("on_validation") is not None:
            self.on_validation.load_state_dict(state["on_validation"])


def fit_warmup(options: WarmupOptions, steps_per_epoch: int, total_steps: int) -> int:
    """The warmup in optimizer steps, shortened (with one warning) to leave the schedule at least
    one step when the run is shorter than it (debug=fast, trainer.max_steps, a small data set)."""
    warmup = options.steps(steps_per_epoch)
    if warmup < total_steps:
        return warmup
    fitted = total_steps - 1
    asked = (
        f"scheduler.warmup_steps={options.warmup_steps}"
        if options.warmup_steps is not None
        else f"scheduler.warmup_epochs={options.warmup_epochs:g} ({warmup} optimizer steps)"
    )
    log.warning(
        "%s is not shorter than this run (%d optimizer steps): warming up over %d step(s) instead.",
        asked,
        total_steps,
        fitted,
    )
    return fitted


def build_schedule(
    spec: dict, optimizer: torch.optim.Optimizer, *, total_steps: int, steps_per_epoch: int
) -> Schedule:
    """The configured schedule for the steps after warmup, preceded by a linear warmup."""
    if total_steps < 1 or steps_per_epoch < 1:
        raise ConfigError(
            f"scheduler={spec.get('name')} needs the run's length in optimizer steps, but it is "
            f"{total_steps} ({steps_per_epoch} per epoch); check trainer.epochs, trainer.max_steps "
            "and the data size."
        )
    options = SCHEDULERS.check(spec)
    warmup = fit_warmup(options, steps_per_epoch, total_steps)
    factor = options.warmup_start_factor
    for group in optimizer.param_groups:  # as torch's schedulers do; plateau alone would not
        group.setdefault("initial_lr", group["lr"])
    plan = StepPlan(total_steps, steps_per_epoch, warmup)
    main = SCHEDULERS.build(spec, optimizer=optimizer, plan=plan)
    ramp = (
        LinearLR(optimizer, start_factor=factor, end_factor=1.0, total_iters=warmup)
        if warmup
        else None
    )
    if isinstance(main, Plateau):
        # LinearLR is chainable: after the warmup it leaves the LR to the plateau's reductions
        return Schedule(ramp, on_validation=main)
    if ramp is None or main is None:  # main None: constant, the ramp ends at the base LR
        return Schedule(ramp or main)
    return Schedule(SequentialLR(optimizer, [ramp, main], milestones=[warmup]))


def total_optimizer_steps(epochs: int, steps_per_epoch: int, max_steps: int | None) -> int:
    total = epochs * steps_per_epoch
    return min(total, max_steps) if max_steps else total
