"""Turn the composed config into live objects, in dependency order:

    data -> augmentation -> loaders -> model -> param groups -> optimizer -> schedule -> loss

Runtime facts flow forward explicitly (classes and channels from the data into the model, the
optimizer into the schedule, steps per epoch into the schedule); no builder reads global state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from athanor.augment import AUGMENTS, Augmentation, MixOptions
from athanor.config.groups import COMPONENT_GROUPS
from athanor.config.settings import RunSettings
from athanor.data import DATASETS, DataBundle, DataOptions, TensorSplit
from athanor.data.loaders import (
    DeviceBatches,
    MemoryLoader,
    Normalize,
    TorchLoader,
    _SeededSamples,
    load_into_memory,
)
from athanor.data.order import EpochOrder, ShardOrder
from athanor.data.plain import PlainLoader, PlainNormalize, PlainSplit, example_input
from athanor.data.prepare import apply_data_options, builder_options, check_data
from athanor.distributed import Dist
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
from athanor.models.options import apply_model_options
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


@dataclass
class Loaders:
    train: MemoryLoader | TorchLoader
    val: MemoryLoader | TorchLoader
    path: str
    test: MemoryLoader | TorchLoader | None = None  # the official test split, when there is one


def choose_path(bundle: DataBundle, options: DataOptions, augmentation: Augmentation) -> str:
    """memory when the data fits data.memory_budget_mb and needs no per-sample transform: an
    in-memory set by default (loader=auto), files only when asked (loader=memory: decoded once).
    Otherwise torch (a DataLoader), saying why unless that is the data set's normal path."""
    if options.loader == "torch":
        return "torch"
    files = not isinstance(bundle.train, TensorSplit)
    reason = None
    if files and options.loader == "auto":
        return "torch"
    if (size_mb := _decoded_mb(bundle)) > options.memory_budget_mb:
        reason = f"{size_mb:.0f} MB exceeds data.memory_budget_mb={options.memory_budget_mb:.0f}"
    elif not augmentation.batchable:
        reason = f"the augmentation runs per sample ({augmentation.sample_train})"
    if reason is None:
        return "memory"
    log.info("data path: %s; using the DataLoader path (data.loader=torch).", reason)
    return "torch"


def _decoded_mb(bundle: DataBundle) -> float:
    """Size of train + val as uint8 tensors (files: once decoded at data.image_size)."""
    per_image = bundle.channels * bundle.image_size**2
    return sum(len(s) * per_image for s in (bundle.train, bundle.val)) / 2**20


def build_loaders(
    bundle: DataBundle,
    options: DataOptions,
    augmentation: Augmentation,
    mixer,
    *,
    seed: int,
    d: Dist,
    device: torch.device,
    overfit_batches: int = 0,
    task: Task | None = None,
) -> Loaders:
    """Training, validation (and test) loaders on the chosen path. Training batches are a pure
    function of (seed, epoch, batch index): the order comes from EpochOrder, the augmentation
    from the batch's generator (memory path) or per-sample seeds (DataLoader path)."""
    if isinstance(bundle.train, PlainSplit):
        return plain_loaders(
            bundle,
            options,
            augmentation,
            mixer,
            seed=seed,
            d=d,
            device=device,
            task=task,
            overfit_batches=overfit_batches,
        )
    path = choose_path(bundle, options, augmentation)
    if path == "memory" and not isinstance(bundle.train, TensorSplit):
        for name in ("train", "val", "test"):  # image files, decoded once (data.loader=memory)
            split = getattr(bundle, name)
            if split is not None:
                setattr(bundle, name, load_into_memory(split, bundle.image_size, options))
    train_split = bundle.train
    if overfit_batches:
        # a few fixed batches, no augmentation: the model must be able to memorize them
        train_split = train_split.subset(overfit_batches * options.batch_size)
        augmentation, mixer = Augmentation(sample_val=augmentation.sample_val), None
    train_order = _train_order(train_split, options, seed, d, shuffle=not overfit_batches)
    normalize = Normalize(bundle.mean, bundle.std, device)
    train_batches = DeviceBatches(normalize, augmentation, mixer, seed, device)
    if path == "memory":
        train = MemoryLoader(train_split, train_order, train_batches, options.memory_budget_mb)
    else:
        samples = _SeededSamples(train_split, augmentation.sample_train, bundle.image_size, seed)
        train = TorchLoader(samples, train_order, train_batches, options)

    def evaluation(split):
        order = _eval_order(split, options, d)
        batches = DeviceBatches(normalize, None, None, seed, device)
        if path == "memory":
            return MemoryLoader(split, order, batches, options.memory_budget_mb)
        samples = _SeededSamples(split, augmentation.sample_val, bundle.image_size, seed)
        return TorchLoader(samples, order, batches, options)

    val = evaluation(bundle.val)
    test = None
    if bundle.test is not None:
        test = val if bundle.test is bundle.val else evaluation(bundle.test)
    return Loaders(train, val, path, test)


def evaluation_loaders(
    bundle: DataBundle,
    options: DataOptions,
    *,
    seed: int,
    device: torch.device,
    task: Task | None = None,
) -> Loaders:
    """The loaders of a saved run's data in this one process, without augmentation or mixing:
    what `evaluate` and `athanor export` read a checkpoint's data with."""
    return build_loaders(
        bundle, options, Augmentation(), None, seed=seed, d=Dist(), device=device, task=task
    )


def _train_order(split, options: DataOptions, seed: int, d: Dist, *, shuffle: bool) -> EpochOrder:
    """The training order: seeded per epoch, sharded across ranks, weighted when asked."""
    weights = _sample_weights(split) if options.sampler == "weighted" else None
    return EpochOrder(
        len(split),
        options.batch_size,
        seed=seed,
        shuffle=shuffle,
        drop_last=options.drop_last,
        rank=d.rank,
        world=d.world,
        weights=weights,
    )


def _eval_order(split, options: DataOptions, d: Dist) -> ShardOrder:
    """Evaluation: every sample once, this rank's shard, the per-rank share of the batch."""
    return ShardOrder(len(split), max(1, options.batch_size // d.world), rank=d.rank, world=d.world)


def plain_loaders(
    bundle: DataBundle,
    options: DataOptions,
    augmentation: Augmentation,
    mixer,
    *,
    seed: int,
    d: Dist,
    device: torch.device,
    task: Task | None,
    overfit_batches: int = 0,
) -> Loaders:
    """The DataLoader path for plain Datasets (any input: tensors, tuples, dicts). Training
    batches' image input goes through the batch augmentations and mixing."""
    normalize = PlainNormalize(bundle.mean, bundle.std, bundle.info.get("input_shape", ()), device)
    loss_targets = task.loss_targets if task is not None else (lambda t: t)
    train_split = bundle.train
    if overfit_batches:  # a few fixed batches, no augmentation: the model must memorize them
        train_split = train_split.subset(overfit_batches * options.batch_size)
        augmentation, mixer = Augmentation(), None
    train_order = _train_order(train_split, options, seed, d, shuffle=not overfit_batches)
    augment = _plain_augment(bundle, augmentation, mixer, normalize, seed=seed, device=device)

    def loader(split, order, augment=None):
        image = bundle.info.get("image")
        return PlainLoader(
            split, order, normalize, loss_targets, options, device, seed, augment, image
        )

    def evaluation(split):
        return loader(split, _eval_order(split, options, d))

    val = evaluation(bundle.val)
    test = evaluation(bundle.test) if bundle.test is not None else None
    return Loaders(loader(train_split, train_order, augment), val, "torch", test)


def _plain_augment(
    bundle: DataBundle,
    augmentation: Augmentation,
    mixer,
    normalize: PlainNormalize,
    *,
    seed: int,
    device: torch.device,
) -> DeviceBatches | None:
    """The batch augmentations and mixing for a plain Dataset's image input ([C, H, W]: the
    input itself, or the first such entry of a tuple or dict), saying what is not applied."""
    inputs = bundle.info.get("inputs")
    if augmentation.sample_train is not None:
        log.warning(
            "augment: %s runs per sample on the image pipeline, not on plain Datasets (%s); "
            "apply it in the Dataset. The batch augmentations apply.",
            augmentation.sample_train,
            inputs,
        )
    wanted = bool(augmentation.batch_ops or augmentation.normalized_ops or mixer)
    if not wanted:
        return None
    if "image" not in bundle.info:
        log.warning(
            "augment: not applied: the inputs (%s) hold no image ([C, H, W] tensor); augment "
            "them in the Dataset, or use augment=none.",
            inputs,
        )
        return None
    if mixer is not None and bundle.info["image"] is not None:
        raise ConfigError(
            f"augment mixup/cutmix mix one image input, but these inputs are {inputs}: mixing the "
            "image alone would pair it with another sample's other inputs. Turn mixing off "
            "(augment.mixup_alpha=0 augment.cutmix_alpha=0)."
        )
    where = "" if bundle.info["image"] is None else f" (input {bundle.info['image']!r})"
    log.info("augment: on the image input%s of the plain Datasets (%s)", where, inputs)
    return DeviceBatches(normalize, augmentation, mixer, seed, device)  # type: ignore[arg-type]


def _sample_weights(split) -> torch.Tensor:
    """Inverse class frequency per sample, so each class is drawn equally often."""
    counts = torch.bincount(split.labels).double().clamp(min=1)
    return (1.0 / counts)[split.labels]


def build_model(config: dict[str, Any], bundle: DataBundle) -> nn.Module:
    """The model for the data's shape; ``bundle.num_classes`` is the task's number of outputs."""
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
    )
    return model


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
