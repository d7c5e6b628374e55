"""Resuming a run, in one room: find the checkpoint (`resume=<run folder | .pt | auto>`), build
the config the resume runs with (the run's own, plus what the command line sets), refuse a
change the run cannot follow, a resume that would train nothing and one that would rewind the
run, and apply the allowed changes as the state is restored: the optimizer's groups take the
new LR and weight decay (``OptimizerState``), the schedule follows a new length or LR
(``ScheduleState``). Both are parts of the train state (engine/state.py ``TrainState``), whose
walk restores everything else; the Hydra side (which overrides were typed) is cli/resume_config.py.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import shlex
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from athanor.config.flatten import flatten
from athanor.errors import ConfigError
from athanor.record.checkpoints import (
    is_weights_only,
    load_file,
    load_latest,
    saved_progress,
    saved_step,
)
from athanor.record.folder import resume_command

if TYPE_CHECKING:
    from athanor.optim.schedulers import Schedule

log = logging.getLogger(__name__)

# THE list of keys that may differ from the checkpoint's config on resume (fnmatch patterns),
# each one taking effect: the budget (the schedule is recomputed for the new length and replayed
# to the saved step), the optimizer's LR and weight decay (written into the restored groups,
# lr_mult and no-decay groups kept), what is logged and saved, and how batches are loaded (not
# which). README.md, "Resume", lists the same keys (a test checks it).
RESUMABLE_KEYS = (
    "trainer.epochs",
    "trainer.max_steps",
    "trainer.stop_at_step",  # a run cut by `athanor reproduce --steps` can go on
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
IGNORED_KEYS = frozenset({"resume", "rewind", "dry_run"})


def resumable(key: str) -> bool:
    """Whether ``key`` (dotted) may differ from the checkpoint's config on resume."""
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in RESUMABLE_KEYS)


@dataclass
class Resumed:
    state: dict[str, Any]
    path: Path
    changes: list[str] = field(default_factory=list)
    rewinds: list[Path] = field(default_factory=list)  # rewind=true: the newer step files

    def rewind(self) -> None:
        """Delete the step files newer than the checkpoint (rewind=true): the run goes on from
        it, and a later resume=auto must not pick them up."""
        for newer in self.rewinds:
            log.warning(
                "resume: rewind=true: %s (newer than %s) deleted", newer.name, self.path.name
            )
            newer.unlink(missing_ok=True)

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
            'config and may change only these keys (README.md, "Resume"): '
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


def typed_paths(overrides: list[str], config: dict[str, Any]) -> tuple[list[str], bool]:
    """The config paths the overrides name (``a.b=1``, ``+a.b=1``, ``~a.b``, ``model=x``), and
    whether one of them picks a group option (whose effect only a composition shows)."""
    paths, groups = [], False
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0].split("@", 1)[0].strip()
        if not key or key.split(".")[0] == "hydra":
            continue
        if "." in key:
            paths.append(key)
            continue
        if key in config:  # a top-level key, or a group whose package is its own name
            paths.append(key)
        # a group option (model=…, experiment=…, debug=…) may set keys beyond its own node
        groups = groups or key not in config or isinstance(config[key], dict)
    return paths, groups


def plan(
    config: dict[str, Any],
    checkpoints: Path,
    overrides: list[str],
    composed_without_overrides: Callable[[], dict[str, Any]],
) -> tuple[dict[str, Any], tuple[dict[str, Any], Path] | None]:
    """(the config a resume runs with, (the checkpoint found, its path) or None). ``config`` is
    composed from today's defaults and the ``overrides``; the resume runs the checkpoint's own
    config plus what the overrides change (``composed_without_overrides()``: today's defaults
    alone, asked for only when an override picks a group option). Nothing to resume: ``config``."""
    if not config.get("resume"):
        return config, None
    found = find(config["resume"], checkpoints, mmap=True)
    if found is None:
        return config, None
    paths, groups = typed_paths(overrides, config)
    if groups:  # e.g. experiment=…, model=…: what they change is the difference they make
        paths += touched_paths(composed_without_overrides(), config)
    return resume_config(found[0]["config"], config, paths), found


def check(checkpoint: dict[str, Any], path: Path, config: dict[str, Any]) -> list[str]:
    """Everything a resume must pass before anything is written; -> the config changes. Raises
    ConfigError for a change the run cannot follow, and for a `resume=<path>` that would train
    nothing or rewind the run (``rewind=true`` allows the latter)."""
    changes = config_changes(checkpoint["config"], config, path)
    if config.get("resume") != "auto":  # a requeued job (auto) may find its run done: no word
        _refuse_nothing_to_do(checkpoint, path, config)
        _refuse_rewind(checkpoint, path, config)
    return changes


def _refuse_nothing_to_do(checkpoint: dict[str, Any], path: Path, config: dict[str, Any]) -> None:
    p, t, asked = saved_progress(checkpoint), config["trainer"], config["resume"]
    max_steps = t.get("max_steps")
    more = ""  # the resume that trains further, where a budget can be raised
    if p.get("stop_reason") == "early_stopping":
        why = f"its run stopped early (trainer.early_stopping) at epoch {p['epoch']}"
    elif p["epoch"] >= t["epochs"]:
        why = f"it is at epoch {p['epoch']}, and trainer.epochs={t['epochs']}"
        more = resume_command(asked, f"trainer.epochs={p['epoch'] + 10}")
    elif max_steps and p["step"] >= max_steps:
        why = f"it is at step {p['step']}, and trainer.max_steps={max_steps}"
        more = resume_command(asked, "trainer.max_steps=null")
    elif t.get("stop_at_step") and p["step"] >= t["stop_at_step"]:  # it would take one step
        why = f"it is at step {p['step']}, and trainer.stop_at_step={t['stop_at_step']}"
        more = resume_command(asked, "trainer.stop_at_step=null")
    else:
        return
    further = f"To train it further, raise the budget: `{more}`; to" if more else "To"
    raise ConfigError(
        f"Nothing to resume: resume={asked} ({path.name}) would train no step ({why}). "
        f"{further} start a new run from its weights: "
        f"`train model.weights={shlex.quote(str(path))}`. The run folder is unchanged."
    )


def newer_checkpoints(checkpoint: dict[str, Any], path: Path) -> list[Path]:
    """The step files of ``path``'s folder that are newer than ``checkpoint`` (a rewind)."""
    step = saved_step(checkpoint)
    return [p for p in path.parent.glob("step_*.pt") if int(p.stem.split("_")[1]) > step]


def _refuse_rewind(checkpoint: dict[str, Any], path: Path, config: dict[str, Any]) -> None:
    newer = newer_checkpoints(checkpoint, path)
    if not newer or config.get("rewind"):
        return
    latest = max(int(p.stem.split("_")[1]) for p in newer)
    raise ConfigError(
        f"resume={path} would rewind its run: it is step {saved_step(checkpoint)}, and the run "
        f"went on to step {latest}; resuming here would replace last.pt and the {len(newer)} "
        f"newer checkpoint(s). To continue the run where it is: "
        f"`{resume_command(path.parent.parent)}`. To rewind it anyway (the newer checkpoints "
        f"are deleted): `{resume_command(path, 'rewind=true')}`. To start a new run from these "
        f"weights: `train model.weights={shlex.quote(str(path))}`. The run folder is unchanged."
    )


def find_resume(config: dict[str, Any], checkpoints: Path) -> Resumed | None:
    """The checkpoint this run continues from (None: a fresh run), checked against ``config``
    before anything is written. A rewind (``rewind=true``) lists the newer checkpoints, which
    ``Resumed.rewind`` deletes once the run has started."""
    found = find(config.get("resume"), checkpoints)
    if found is None:
        return None
    state, path = found
    changes = check(state, path, config)
    for change in changes:
        log.info("resume: setting changed since the checkpoint: %s", change)
    return Resumed(state, path, changes, rewinds=newer_checkpoints(state, path))


# param-group values that are multiples of the base LR (torch's schedulers and OneCycleLR)
LR_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")


def base_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each param group's base LR (what its schedule starts from: optim.lr x lr_mult)."""
    return [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]


class OptimizerState:
    """The optimizer's state (a train state part). Loading it puts the saved param groups back,
    so a resume that changes ``optim.lr`` or ``optim.weight_decay`` writes the freshly built
    groups' values into the restored ones: each group's LR values are scaled by its new/saved
    base LR (the lr_mult factors and the no-decay groups are kept, not flattened), its weight
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
        decays = [g.get("weight_decay") for g in self.optimizer.param_groups]
        return list(zip(base_lrs(self.optimizer), decays, strict=True))

    def rebase(self, built: list[tuple[float, float | None]]) -> None:
        """Write the built groups' LR and weight decay into the restored ones (a sharded
        optimizer, restored its own way, calls this too)."""
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


class Position(Protocol):
    step: int  # optimizer steps done (engine/state.py ``Progress``)


class ScheduleState:
    """The LR schedule, the plan it was built for (optimizer steps per epoch and in total) and
    the base LRs it starts from (a train state part, restored after ``progress`` and the
    optimizer). The same plan and LRs: the saved schedule is loaded. A new length (more epochs,
    another max_steps) or a new optim.lr: the freshly built schedule (built for them) is stepped
    to the saved step, through torch's public ``step()`` only: the LRs a schedule gives are a
    function of its steps, so it lands where a run built this way would be."""

    def __init__(
        self,
        schedule: Schedule,
        optimizer: torch.optim.Optimizer,
        plan: dict[str, int],
        position: Position,
    ):
        self.schedule, self.optimizer, self.plan = schedule, optimizer, plan
        self.position = position  # the run's progress, restored before this part
        self.bases = base_lrs(optimizer)
        # the LRs the fresh schedule starts from (step 0, e.g. the warmup's first value)
        self.start_lrs = [g["lr"] for g in optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"plan": self.plan, "base_lrs": self.bases, "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["plan"] == self.plan and state.get("base_lrs", self.bases) == self.bases:
            self.schedule.load_state_dict(state["schedule"])
            return
        log.info(
            "resume: the schedule is recomputed for %s and stepped to step %d",
            "the new length" if state["plan"] != self.plan else "the new base LR",
            self.position.step,
        )
        for group, lr in zip(self.optimizer.param_groups, self.start_lrs, strict=True):
            group["lr"] = lr
        # a plateau's reductions come from validations, not steps: they are kept as saved
        self.schedule.load_state_dict({**state["schedule"], "per_step": None})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
            for _ in range(self.position.step):
                self.schedule.step()
