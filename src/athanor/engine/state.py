"""The train state: every stateful part of a run, listed once (torchtitan's
``CheckpointManager(states={...})`` and its ``Stateful`` protocol).

A checkpoint holds ``TrainState.state_dict()`` (one entry per part) beside the format version,
the config and the data spec (``DataBundle.spec()``: inputs, outputs, the normalization used,
read by evaluate and export; a fact of the run, not state to restore). Resuming is
``TrainState.load_state_dict()``. Saving and restoring walk the list, so a new stateful part
is one more entry where the run builds its ``TrainState``: checkpoint and resume code do not
change. Parts are restored in the order listed: progress first (the schedule is stepped to its
step when the plan or the LR changed), RNG states last (nothing may draw after them). What a
resume may change (a new LR, weight decay or length) is applied by the optimizer and schedule
parts, which live with the rest of resuming in record/resume.py.

The data order has no state of its own: batches are a pure function of (seed, epoch, batch index)
(data/order.py), so ``progress`` (epoch, batch in the epoch) is the data loader's position.
"""

from __future__ import annotations

import logging
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
    stop_reason: str | None = (
        None  # epochs, max_steps, stop_at_step, max_time, early_stopping, interrupted
    )

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


class Counter:
    """An integer attribute of another object as a stateful part (e.g. skipped NaN steps)."""

    def __init__(self, owner: Any, attribute: str):
        self.owner, self.attribute = owner, attribute

    def state_dict(self) -> dict[str, Any]:
        return {"count": int(getattr(self.owner, self.attribute))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        setattr(self.owner, self.attribute, int(state["count"]))


class RngState:
    """Python, numpy and torch (CPU + CUDA) generators of every rank: each rank draws its own
    (dropout; seeded with seed + rank), and a resumed rank continues its own stream."""

    def __init__(self, device: torch.device | None = None, rank: int = 0, world: int = 1):
        self.device, self.rank, self.world = device, rank, world
        self._gathered: list[dict[str, Any]] | None = None

    def gather(self) -> None:
        """Collect every rank's states for the next ``state_dict`` (a collective: every rank
        calls it before rank 0 writes the checkpoint)."""
        if self.world > 1:
            import torch.distributed as dist

            states: list[Any] = [None] * self.world
            dist.all_gather_object(states, rng_state(self.device))
            self._gathered = states

    def state_dict(self) -> dict[str, Any]:
        gathered, self._gathered = self._gathered, None
        return {"ranks": gathered} if gathered else rng_state(self.device)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ranks = state.get("ranks")
        if ranks is None:  # one process's states (or a checkpoint of before per-rank states)
            set_rng_state(state, self.device)
        elif self.rank < len(ranks):  # a rank the saved run had: its own stream
            set_rng_state(ranks[self.rank], self.device)
        # a rank the saved run did not have keeps its fresh seed (seed + rank)


class TrainState:
    """The run's stateful parts by name, in restore order; ``None`` parts are left out (e.g. no
    EMA, early stopping off)."""

    def __init__(self, parts: dict[str, Stateful | None]):
        self.parts = {name: part for name, part in parts.items() if part is not None}
        for name, part in self.parts.items():
            if not isinstance(part, Stateful):
                raise TypeError(f"train state part {name!r} has no state_dict/load_state_dict")

    def gather(self) -> None:
        """What every rank must contribute before rank 0 writes (a collective where a part
        has one, e.g. the per-rank RNG states); called on every rank."""
        for part in self.parts.values():
            gather = getattr(part, "gather", None)
            if gather is not None:
                gather()

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
