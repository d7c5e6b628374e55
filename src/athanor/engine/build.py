"""Turn the composed config into live objects, in dependency order:

    data -> augmentation -> loaders -> model -> param groups -> optimizer -> schedule -> loss

Runtime facts flow forward explicitly (classes and channels from the data into the model, the
optimizer into the schedule, steps per epoch into the schedule); no builder reads global state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from athanor.augment import AUGMENTS, Augmentation, MixOptions
from athanor.config.groups import COMPONENT_GROUPS
from athanor.config.settings import RunSettings
from athanor.data import DATASETS, DataBundle, DataOptions
from athanor.data.plain import call_model, example_input
from athanor.data.prepare import apply_data_options, builder_options, check_data
from athanor.errors import ConfigError
from athanor.losses import (
    LOSSES,
    PENALTIES,
    build_loss,
    check_class_lengths,
    check_penalties,
    check_soft_targets,
)
from athanor.metrics import METRICS
from athanor.models import MODELS, model_label
from athanor.models.options import apply_model_options, model_options
from athanor.models.probe import probe
from athanor.optim import OPTIMIZERS, SCHEDULERS
from athanor.optim.param_groups import finalize_groups, group_options, param_groups
from athanor.optim.schedulers import Schedule, build_schedule, check_monitor, total_optimizer_steps
from athanor.registry import Registry
from athanor.tasks import TASKS, Task

log = logging.getLogger(__name__)

# the component groups' registries, keyed and ordered by the one table in config/groups.py
_BY_GROUP = {
    r.group: r for r in (MODELS, DATASETS, OPTIMIZERS, SCHEDULERS, AUGMENTS, LOSSES, TASKS)
}
REGISTRIES: dict[str, Registry] = {group: _BY_GROUP[group] for group in COMPONENT_GROUPS}


def validate(config: dict[str, Any]) -> None:
    """Check every component node before any work starts: its builder's arguments (names, types,
    ranges) and its group-wide keys (the typed option classes), then what they imply together."""
    options = {}
    for group, registry in REGISTRIES.items():
        if group not in config:
            raise ConfigError(
                f"The config has no `{group}` group; add `- {group}: ...` to the defaults."
            )
        options[group] = registry.check(config[group])
    check_data(config["data"])
    check_soft_targets(config["loss"], mixing=options["augment"].enabled)
    check_class_lengths(config["loss"], config["data"].get("class_names"))
    check_task(config, mixing=options["augment"].enabled)
    ema = (config.get("trainer") or {}).get("ema") or {}
    check_monitor(config["scheduler"], ema=ema.get("decay") is not None)


def build_task(config: dict[str, Any]) -> Task:
    """The task (not yet bound to the data), with task.metrics added to its own."""
    options = TASKS.check(config["task"])
    return TASKS.build(config["task"]).add_metrics(options.metrics or ())


def check_task(config: dict[str, Any], *, mixing: bool = False) -> None:
    """Refuse, before any work, one of athanor's losses or metrics that does not fit the task
    (a user's own is theirs to fit: athanor cannot know what it expects), and mixup/cutmix for
    a task whose targets are not class labels."""
    task, loss = build_task(config), config["loss"]
    if mixing and not task.mixes_labels:
        raise ConfigError(
            f"augment mixup/cutmix mix class labels, but task={task.name} has other targets; "
            "turn mixing off (augment.mixup_alpha=0 augment.cutmix_alpha=0)."
        )
    names = list(loss.get("terms") or {}) if loss["name"] == "terms" else [loss["name"]]
    check_penalties(loss)
    for name in [n for n in names if n not in PENALTIES]:  # a penalty term fits every task
        task.check_loss(name, _athanors_own(LOSSES) - {"terms"})
    task.check_metrics(_athanors_own(METRICS))


def _athanors_own(registry: Registry) -> set[str]:
    return {e.name for e in registry.entries() if e.origin.startswith("athanor.")}


def build_data(config: dict[str, Any]) -> tuple[DataBundle, DataOptions]:
    """The data set with the `data.*` options applied (subset, image size, normalization).
    A builder returns a DataBundle or plain (train, val[, test]) Datasets (data/plain.py)."""
    options = check_data(config["data"])
    built = DATASETS.build(config["data"], **builder_options(config["data"]))
    bundle = apply_data_options(built, options, seed=int(config.get("seed", 0)))
    log.info("data %s: %s", config["data"]["name"], bundle.describe())
    return bundle, options


def build_augmentation(
    config: dict[str, Any], bundle: DataBundle
) -> tuple[Augmentation, MixOptions]:
    mix = AUGMENTS.check(config["augment"])
    augmentation = AUGMENTS.build(
        config["augment"], image_size=bundle.image_size, channels=bundle.channels
    )
    mixing = f" + mixup {mix.mixup_alpha:g} / cutmix {mix.cutmix_alpha:g}" if mix.enabled else ""
    log.info("augment %s: %s%s", config["augment"]["name"], augmentation.describe(), mixing)
    return augmentation, mix


def build_model(
    config: dict[str, Any],
    bundle: DataBundle,
    forward: Callable[[nn.Module, Any], Any] = call_model,
) -> nn.Module:
    """The model for the data's shape; ``bundle.num_classes`` is the task's number of outputs.
    ``forward``: how the probe runs it once on an example input (models/probe.py)."""
    model = MODELS.build(
        config["model"],
        num_classes=bundle.num_classes,
        in_channels=bundle.channels,
        image_size=bundle.image_size,
        input_shape=bundle.info.get("input_shape"),
    )
    _, _, shared = MODELS.split(config["model"])
    apply_model_options(model, shared)
    probe(
        model,
        name=model_label(config["model"]),
        num_classes=bundle.num_classes,
        in_channels=bundle.channels,
        image_size=bundle.image_size,
        example=example_input(bundle),
        forward=forward,
    )
    return model


def model_blocks(config: dict[str, Any]) -> list[str] | None:
    """``model.blocks``: the user's names for the model's repeated blocks (None: the zoo's)."""
    return model_options(MODELS.split(config["model"])[2]).blocks


def build_optimizer(config: dict[str, Any], model: nn.Module) -> torch.optim.Optimizer:
    options = group_options(OPTIMIZERS.split(config["optim"])[2])
    groups = param_groups(model, no_decay=options.no_decay, lr_mult=options.lr_mult)
    optimizer = OPTIMIZERS.build(config["optim"], params=groups)
    finalize_groups(optimizer, groups)
    return optimizer


def build_scheduler(
    config: dict[str, Any], optimizer, *, steps_per_epoch: int, total_steps: int
) -> Schedule:
    return build_schedule(
        config["scheduler"], optimizer, total_steps=total_steps, steps_per_epoch=steps_per_epoch
    )


def plan_steps(settings: RunSettings, batches_per_epoch: int) -> tuple[int, int]:
    """-> (optimizer steps per epoch, total optimizer steps of the run)."""
    t = settings.trainer
    batches = min(batches_per_epoch, t.limit_train_batches or batches_per_epoch)
    if batches < t.accumulate:
        raise ConfigError(
            f"trainer.accumulate={t.accumulate} needs at least that many batches per epoch, but an "
            f"epoch has {batches}; lower trainer.accumulate or data.batch_size."
        )
    steps_per_epoch = batches // t.accumulate
    return steps_per_epoch, total_optimizer_steps(t.epochs, steps_per_epoch, t.max_steps)


__all__ = ["REGISTRIES", "validate", "build_data", "build_loss", "LOSSES", "SCHEDULERS"]
