"""The train state: every stateful part of a run, listed once (torchtitan's
``CheckpointManager(states={...})`` and its ``Stateful`` protocol).

A checkpoint holds ``TrainState.state_dict()`` (one entry per part) beside the format version,
the config and the data spec (``DataBundle.spec()``: inputs, outputs, the normalization used,
read by evaluate and export; a fact of the run, not state to restore). Resuming is
``TrainState.load_state_dict()``. Saving and restoring walk the list, so a new stateful part
is one more entry where the run builds its ``TrainState``: checkpoint and resume code do not
change. Parts are restored in the order listed: progress first (the schedule replays
from its step when the plan changed), RNG states last (nothing may draw after them).

The data order has no state of its own: batches are a pure function of (seed, epoch, batch index)
(data/order.py), so ``progress`` (epoch, batch in the epoch) is the data loader's position.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from athanor.errors import ConfigError
from athanor.record.resume import load_model_state
from athanor.seeding import rng_state, set_rng_state

log = logging.getLogger(__name__)


@runtime_checkable
class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Progress:
    """Where the run is. The epoch/batch pair is also the data order's position."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed
    batch: int = 0  # batches consumed in the current epoch (mid-epoch resume point)
    stop_reason: str | None = None  # epochs, max_steps, max_time, early_stopping, interrupted

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
        if self.stop_reason != "early_stopping":
            self.stop_reason = None  # interrupted / max_time / a step or epoch cap: go on


class ModelState:
    """The model's weights; loading is strict, and a DDP-saved state (``module.``) fits too."""

    def __init__(self, model: nn.Module):
        self.model = model

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_model_state(self.model, state, Path("the checkpoint"))


# param-group values that are multiples of the base LR (torch's schedulers and OneCycleLR)
LR_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")


class OptimizerState:
    """The optimizer's state. Loading it puts the saved param groups back, so a resume that
    changes ``optim.lr`` or ``optim.weight_decay`` writes the freshly built groups' values into
    the restored ones: each group's LR values are scaled by its new/saved base LR (the schedule's
    position, the lr_mult factors and the no-decay groups are kept, not flattened), its weight
    decay set to the built one."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        built = self.built()
        self.optimizer.load_state_dict(state)  # new group dicts: the saved values
        self.rebase(built)

    def built(self) -> list[tuple[float, float | None]]:
        """The freshly built groups' base LR and weight decay (before a load replaces them)."""
        return [
            (g.get("initial_lr", g["lr"]), g.get("weight_decay"))
            for g in self.optimizer.param_groups
        ]

    def rebase(self, built: list[tuple[float, float | None]]) -> None:
        """Write the built groups' LR and weight decay into the restored ones."""
        changed = False
        for group, (base, decay) in zip(self.optimizer.param_groups, built, strict=True):
            saved = group.get("initial_lr", group["lr"])
            if saved != base and saved > 0:
                for key in LR_KEYS:
                    if key in group:
                        group[key] = group[key] * (base / saved)
                group["initial_lr"] = base
                changed = True
            if decay is not None and group.get("weight_decay") != decay:
                group["weight_decay"], changed = decay, True
        if changed:
            log.info("resume: the optimizer's groups now: %s", self.describe())

    def describe(self) -> str:
        return "; ".join(
            f"{g.get('name', i)}: base lr {g['initial_lr']:.4g}, "
            f"weight_decay {g.get('weight_decay', 0):.4g}"
            for i, g in enumerate(self.optimizer.param_groups)
            if "initial_lr" in g
        )


def _per_step_schedulers(schedule: Any) -> list[Any]:
    """The torch LR schedulers inside a Schedule (SequentialLR's children too)."""
    found, todo = [], [getattr(schedule, "per_step", None)]
    while todo:
        s = todo.pop()
        if s is not None:
            found.append(s)
            todo += list(getattr(s, "_schedulers", []))
    return found


class ScheduleState:
    """The LR schedule and the plan it was built for (optimizer steps per epoch and in total).
    A resumed run with another plan (more epochs, another max_steps) follows the new schedule
    from the saved step on (``progress``, restored before it), instead of loading the old one."""

    def __init__(
        self,
        schedule: Any,
        optimizer: torch.optim.Optimizer,
        plan: dict[str, int],
        progress: Progress,
    ):
        self.schedule, self.optimizer, self.plan, self.progress = (
            schedule,
            optimizer,
            plan,
            progress,
        )
        # the LRs the fresh schedule starts from (step 0, e.g. the warmup's first value)
        self.start_lrs = [g["lr"] for g in optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"plan": self.plan, "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["plan"] == self.plan:
            self.schedule.load_state_dict(state["schedule"])
            # the base values follow the optimizer's restored groups (a new optim.lr)
            bases = [g["initial_lr"] for g in self.optimizer.param_groups if "initial_lr" in g]
            for scheduler in _per_step_schedulers(self.schedule):
                if len(bases) == len(scheduler.base_lrs):
                    scheduler.base_lrs = list(bases)
            return
        log.info(
            "resume: the schedule is recomputed for the new length (%s -> %s) and replayed to "
            "step %d",
            state["plan"],
            self.plan,
            self.progress.step,
        )
        for group, lr in zip(self.optimizer.param_groups, self.start_lrs, strict=True):
            group["lr"] = lr
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
            for _ in range(self.progress.step):
                self.schedule.step()


class Counter:
    """An integer attribute of another object as a stateful part (e.g. skipped NaN steps)."""

    def __init__(self, owner: Any, attribute: str):
        self.owner, self.attribute = owner, attribute

    def state_dict(self) -> dict[str, Any]:
        return {"count": int(getattr(self.owner, self.attribute))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        setattr(self.owner, self.attribute, int(state["count"]))


class RngState:
    """Python, numpy and torch (CPU + CUDA) generators."""

    def state_dict(self) -> dict[str, Any]:
        return rng_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(state)


class TrainState:
    """The run's stateful parts by name, in restore order; ``None`` parts are left out (e.g. no
    EMA, early stopping off)."""

    def __init__(self, parts: dict[str, Stateful | None]):
        self.parts = {name: part for name, part in parts.items() if part is not None}
        for name, part in self.parts.items():
            if not isinstance(part, Stateful):
                raise TypeError(f"train state part {name!r} has no state_dict/load_state_dict")

    def state_dict(self) -> dict[str, Any]:
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state: dict[str, Any], source: Path | str = "the checkpoint") -> None:
        for name, part in self.parts.items():
            if name not in state or state[name] is None:
                log.warning("resume: %s has no %s state; it starts fresh.", source, name)
                continue
            if state[name] == {}:  # e.g. a disabled GradScaler's: nothing to restore
                continue
            try:
                part.load_state_dict(state[name])
            except ConfigError as err:
                raise ConfigError(f"Cannot resume from {source} ({name}): {err}") from err
        ignored = sorted(set(state) - set(self.parts))
        if ignored:
            log.info("resume: %s also holds %s, unused by this run.", source, ", ".join(ignored))
