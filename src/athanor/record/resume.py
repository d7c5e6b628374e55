"""Resuming a run: find the checkpoint (`resume=<run folder | .pt | auto>`) and refuse an
incompatible config. Putting the state back is the train state's business (engine/state.py):
this module knows no part of it.
"""

from __future__ import annotations

import copy
import fnmatch
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
from athanor.record.checkpoints import is_weights_only, load_file, load_latest, saved_progress

log = logging.getLogger(__name__)

# THE list of keys that may differ from the checkpoint's config on resume (fnmatch patterns),
# each one taking effect: the budget (the schedule is recomputed for the new length and replayed
# to the saved step), the optimizer's LR and weight decay (written into the restored groups,
# lr_mult and no-decay groups kept), what is logged and saved, and how batches are loaded (not
# which). README.md, "Resuming a run", lists the same keys (a test checks it).
RESUMABLE_KEYS = (
    "trainer.epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "trainer.limit_train_batches",
    "trainer.limit_val_batches",
    "trainer.val_every",
    "trainer.log_every",
    "trainer.early_stopping.patience",
    "optim.lr",
    "optim.weight_decay",
    "checkpoint.every_epochs",
    "checkpoint.every_steps",
    "checkpoint.keep_steps",
    "checkpoint.best_weights_only",
    "checkpoint.save_last",
    "checkpoint.on_error",
    "logger.*",
    "data.num_workers",
    "data.loader",
    "data.root",
    "data.download",
    "data.memory_budget_mb",
    "data.pin_memory",
    "data.persistent_workers",
    "data.prefetch_factor",
    "device",
    "name",
    "distributed.timeout_s",
    "distributed.backend",
)
# keys that describe this invocation, not the run: always today's value, never compared
IGNORED_KEYS = frozenset({"resume", "dry_run"})


def resumable(key: str) -> bool:
    """Whether ``key`` (dotted) may differ from the checkpoint's config on resume."""
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in RESUMABLE_KEYS)


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


def config_changes(saved: dict[str, Any], config: dict[str, Any], source: Path) -> list[str]:
    """The settings that differ from the checkpoint's (as 'key: old -> new'). Raises ConfigError
    naming every differing key that is not in RESUMABLE_KEYS."""
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

    # a key on one side only is one athanor added or dropped since the checkpoint (its default
    # now, or no longer a setting): not a change of the run; another group option changes `name`
    bad = [
        f"{k}: {show(a)} in the checkpoint, {show(b)} now"
        for k, a, b in diffs
        if not resumable(k) and a is not missing and b is not missing
    ]
    if bad:
        raise ConfigError(
            f"Cannot resume from {source}: the command line changes settings the saved run "
            f"cannot follow. Differing keys: {'; '.join(bad)}. A resume keeps the run's own "
            'config and may change only these keys (README, "Resuming a run"): '
            f"{', '.join(RESUMABLE_KEYS)}. Drop the other overrides, or start a new run (drop "
            "resume=) and load the weights with model.weights=<checkpoint>. The run's "
            "checkpoints and record are unchanged."
        )
    return [f"{k}: {show(a)} -> {show(b)}" for k, a, b in diffs]


def touched_paths(base: dict[str, Any], full: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted paths where ``full`` (composed with the command line) differs from ``base``
    (composed without it). A node whose ``name`` differs (another group option) is one path."""
    if not (isinstance(base, dict) and isinstance(full, dict)):
        return [prefix] if base != full else []
    if prefix and base.get("name") != full.get("name"):
        return [prefix]
    paths = []
    for key in base.keys() | full.keys():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in base or key not in full:
            paths.append(path)
        else:
            paths += touched_paths(base[key], full[key], path)
    return sorted(paths)


def _align(saved: dict[str, Any], full: dict[str, Any], prefix: str = "") -> None:
    """Fit the saved config to this athanor's keys: a key added since takes today's default, a
    key this athanor no longer has goes (said in the log); only inside nodes of the same group
    option (not another model's keys), and not inside free-form maps (e.g. optim.lr_mult)."""
    for key, value in full.items():
        if key not in saved:
            saved[key] = copy.deepcopy(value)
        elif (
            isinstance(value, dict)
            and value
            and isinstance(saved[key], dict)
            and saved[key].get("name") == value.get("name")
        ):
            _align(saved[key], value, f"{prefix}{key}.")
    for key in [k for k in saved if k not in full]:
        log.info("resume: %s%s of the saved config is no longer a setting; dropped", prefix, key)
        del saved[key]


def _set_path(config: dict[str, Any], path: str, source: dict[str, Any]) -> None:
    """Copy ``source``'s value at ``path`` into ``config`` (removed where ``source`` has none)."""
    *parents, leaf = path.split(".")
    src: Any = source
    dst = config
    for key in parents:
        src = src.get(key, {}) if isinstance(src, dict) else {}
        dst = dst.setdefault(key, {})
    if isinstance(src, dict) and leaf in src:
        dst[leaf] = copy.deepcopy(src[leaf])
    else:
        dst.pop(leaf, None)


def resume_config(saved: dict[str, Any], full: dict[str, Any], typed: list[str]) -> dict[str, Any]:
    """The config a resume runs with: the run's own ``saved`` config, with today's value
    (``full``: the composed config) at each path the command line set (``typed``), and at the
    keys that describe this invocation (IGNORED_KEYS)."""
    config = copy.deepcopy(saved)
    _align(config, full)
    for path in sorted(set(typed) | IGNORED_KEYS):
        _set_path(config, path, full)
    return config


_said_fresh: set[Path] = set()  # checkpoint folders whose "starting a fresh run" was said


def _first_time(checkpoints: Path) -> bool:
    """True once per folder and process: `resume=auto` is looked up three times on the way in."""
    key = checkpoints.absolute()
    if key in _said_fresh:
        return False
    _said_fresh.add(key)
    return True


def find(
    resume: str | None, checkpoints: Path, *, mmap: bool = False
) -> tuple[dict[str, Any], Path] | None:
    """The checkpoint that `resume=` names (None: start fresh). ``checkpoints`` is this run's own
    checkpoint folder, used by `resume=auto`. ``mmap``: tensors stay on disk until read (to look
    at the saved config only)."""
    if resume is None:
        return None
    if resume == "auto":
        found = load_latest(checkpoints, mmap=mmap) if checkpoints.is_dir() else None
        if found is None and _first_time(checkpoints):  # the folder name, the config, the run
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
        found = load_latest(folder, mmap=mmap)
        if found is None:
            raise ConfigError(
                f"resume={resume} is a folder without checkpoints (no last.pt or step_*.pt in "
                f"{folder}). Give a run folder that saved checkpoints, or a .pt file."
            )
        return found
    if path.name == "last.pt":  # a damaged last.pt falls back to the previous good file
        return load_latest(path.parent, mmap=mmap)
    state = load_file(path, mmap=mmap)
    if is_weights_only(state):
        raise ConfigError(
            f"resume={resume} holds the model weights only (best.pt with "
            "checkpoint.best_weights_only=true): a run resumes from its full checkpoint, "
            f"resume={path.parent / 'last.pt'} (or the run folder). To start a new run from "
            f"these weights use model.weights={path}."
        )
    return state, path


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
