"""Resuming a run: find the checkpoint (`resume=<run folder | .pt | auto>`), refuse an
incompatible config, and put every piece of state back (weights, optimizer, schedule, scaler,
EMA, position in the epoch, best metric, RNG states).

The data order needs no saved generator: batches are a pure function of (seed, epoch, batch
index) (data/order.py, data/loaders.py), so the position inside the epoch is enough.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from athanor.config.flatten import flatten
from athanor.errors import ConfigError
from athanor.record.checkpoints import load_file, load_latest
from athanor.seeding import set_rng_state

log = logging.getLogger(__name__)

# data.* keys that change how batches are loaded, not which batches: free to change on resume
LOADING_KEYS = frozenset(
    {
        "num_workers",
        "loader",
        "root",
        "download",
        "memory_budget_mb",
        "pin_memory",
        "persistent_workers",
        "prefetch_factor",
    }
)
# keys that say nothing about the training itself
IGNORED_KEYS = frozenset({"resume", "name", "device", "dry_run"})


@dataclass
class Resumed:
    state: dict[str, Any]
    path: Path
    changes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """The entry appended to summary.json's `resumes` list."""
        return {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "checkpoint": str(self.path),
            "epoch": self.state["epoch"],
            "step": self.state["step"],
            "changes": self.changes,
        }


def _incompatible(key: str) -> bool:
    group, _, rest = key.partition(".")
    if group == "model":
        return True
    if group == "data":
        return rest.split(".")[0] not in LOADING_KEYS
    return key == "optim.name"  # another optimizer cannot take over the saved state


def config_changes(saved: dict[str, Any], config: dict[str, Any], source: Path) -> list[str]:
    """The settings that differ from the checkpoint's (as 'key: old -> new'). Raises ConfigError
    listing them when the model, the data or the optimizer kind would change."""
    old, new = flatten(saved), flatten(config)
    keys = sorted(k for k in old.keys() | new.keys() if k.split(".")[0] not in IGNORED_KEYS)
    missing = object()
    diffs = [
        (k, old.get(k, missing), new.get(k, missing))
        for k in keys
        if old.get(k, missing) != new.get(k, missing)
    ]

    def show(v: Any) -> str:
        return "(absent)" if v is missing else repr(v)

    bad = [
        f"{k}: {show(a)} in the checkpoint, {show(b)} now" for k, a, b in diffs if _incompatible(k)
    ]
    if bad:
        raise ConfigError(
            f"Cannot resume from {source}: the config changes the model, the data or the "
            f"optimizer in a way the saved state cannot follow. Differing keys: {'; '.join(bad)}. "
            "Resume with the checkpoint's values, or start a new run (drop resume=) and load the "
            "weights with model.weights=<checkpoint>."
        )
    return [f"{k}: {show(a)} -> {show(b)}" for k, a, b in diffs]


def find(resume: str | None, checkpoints: Path) -> tuple[dict[str, Any], Path] | None:
    """The checkpoint that `resume=` names (None: start fresh). ``checkpoints`` is this run's own
    checkpoint folder, used by `resume=auto`."""
    if resume is None:
        return None
    if resume == "auto":
        found = load_latest(checkpoints) if checkpoints.is_dir() else None
        if found is None:
            log.info(
                "resume=auto: no checkpoint in %s yet, starting a fresh run (a requeued job "
                "finds its checkpoints only with a fixed hydra.run.dir).",
                checkpoints,
            )
        return found
    path = Path(resume).expanduser()
    if not path.exists():
        raise ConfigError(
            f"resume={resume} does not exist. Give a run folder (one with checkpoints/), a "
            "checkpoint file (.pt), or resume=auto to continue this run folder's last.pt when "
            "there is one."
        )
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        found = load_latest(folder)
        if found is None:
            raise ConfigError(
                f"resume={resume} is a folder without checkpoints (no last.pt or step_*.pt in "
                f"{folder}). Give a run folder that saved checkpoints, or a .pt file."
            )
        return found
    if path.name == "last.pt":  # a damaged last.pt falls back to the previous good file
        return load_latest(path.parent)
    return load_file(path), path


def without_weights(config: dict[str, Any]) -> dict[str, Any]:
    """The config to build a model that will receive saved weights: no `model.weights` file to
    load first (it may be gone, and the checkpoint overrides it anyway)."""
    config = copy.deepcopy(config)
    config["model"].pop("weights", None)
    return config


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Strict load; a DDP-saved state (`module.` prefix) works too."""
    state = dict(state)
    consume_prefix_in_state_dict_if_present(state, "module.")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:600]
        raise ConfigError(
            f"The weights in {source} do not fit the model built from the config: {detail}"
        ) from err


@dataclass
class Trainable:
    """The live objects a checkpoint restores (built by the run, passed explicitly)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    stepper: Any  # step.Stepper: grad scaler + skipped-step count + EMA
    plan: dict[str, int]  # steps_per_epoch, total_steps of the current config


def restore(state: dict[str, Any], source: Path, t: Trainable, progress: Any) -> None:
    """Put the saved state back into freshly built objects, RNG states last."""
    load_model_state(t.model, state["model"], source)
    t.optimizer.load_state_dict(state["optimizer"])
    if state.get("plan") == t.plan:
        t.scheduler.load_state_dict(state["scheduler"])
    else:  # more epochs or another max_steps: follow the new schedule from the saved step on
        log.info("resume: the schedule changed (%s -> %s)", state.get("plan"), t.plan)
        for group in t.optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
            for _ in range(state["step"]):
                t.scheduler.step()
    t.stepper.load_state_dict(state["scaler"])
    ema = t.stepper.ema
    if ema is not None and state.get("ema") is not None:
        ema.load_state_dict(state["ema"])
    elif ema is not None:  # an empty average copies the (restored) weights at its first update
        log.warning("resume: the checkpoint has no EMA; the EMA starts from the saved weights.")
    progress.load_state_dict(state["progress"])
    if progress.stop_reason != "early_stopping":
        progress.stop_reason = None  # interrupted / max_time / max_steps: go on
    set_rng_state(state["rng"])
    log.info(
        "resumed from %s: epoch %d, step %d, batch %d of the epoch",
        source,
        progress.epoch,
        progress.step,
        progress.batch,
    )
