"""Resuming a run: find the checkpoint (`resume=<run folder | .pt | auto>`) and refuse an
incompatible config. Putting the state back is the train state's business (engine/state.py):
this module knows no part of it.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from athanor.config.flatten import flatten
from athanor.errors import ConfigError
from athanor.record.checkpoints import load_file, load_latest, saved_progress

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
            "epoch": saved_progress(self.state)["epoch"],
            "step": saved_progress(self.state)["step"],
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
