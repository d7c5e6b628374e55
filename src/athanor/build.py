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
from athanor.data import DATASETS, DataBundle, DataOptions, TensorSplit
from athanor.data.loaders import DeviceBatches, MemoryLoader, Normalize, TorchLoader, _SeededSamples
from athanor.data.options import data_options
from athanor.data.order import EpochOrder, ShardOrder
from athanor.distributed import Dist
from athanor.errors import ConfigError
from athanor.losses import LOSSES, build_loss, check_soft_targets
from athanor.models import MODELS
from athanor.models.options import apply_model_options, model_options
from athanor.models.probe import probe
from athanor.optim import OPTIMIZERS, SCHEDULERS
from athanor.optim.param_groups import finalize_groups, group_options, param_groups
from athanor.optim.schedulers import Schedule, build_schedule, check_monitor, total_optimizer_steps
from athanor.settings import RunSettings, parse

log = logging.getLogger(__name__)

REGISTRIES = {
    "model": MODELS,
    "data": DATASETS,
    "optim": OPTIMIZERS,
    "scheduler": SCHEDULERS,
    "augment": AUGMENTS,
    "loss": LOSSES,
}


def validate(config: dict[str, Any]) -> None:
    """Check every component node against its builder before any work starts."""
    for group, registry in REGISTRIES.items():
        if group not in config:
            raise ConfigError(
                f"The config has no `{group}` group; add `- {group}: ...` to the defaults."
            )
        registry.check(config[group])
    data_options(DATASETS.split(config["data"])[2])
    model_options(MODELS.split(config["model"])[2])
    group_options(OPTIMIZERS.split(config["optim"])[2])
    mix = parse(MixOptions, AUGMENTS.split(config["augment"])[2], "augment")
    check_soft_targets(config["loss"], mixing=mix.enabled)
    ema = (config.get("trainer") or {}).get("ema") or {}
    check_monitor(config["scheduler"], ema=ema.get("decay") is not None)


def build_data(config: dict[str, Any]) -> tuple[DataBundle, DataOptions]:
    _, _, shared = DATASETS.split(config["data"])
    options = data_options(shared)
    bundle = DATASETS.build(config["data"])
    bundle = _apply_data_options(bundle, options)
    log.info("data %s: %s", config["data"]["name"], bundle.describe())
    return bundle, options


def _apply_data_options(bundle: DataBundle, options: DataOptions) -> DataBundle:
    if options.subset:
        bundle.train, bundle.val = (
            bundle.train.subset(options.subset),
            bundle.val.subset(options.subset),
        )
    if options.mean is not None:
        bundle.mean = list(options.mean)
    if options.std is not None:
        bundle.std = list(options.std)
    if options.class_names is not None:
        bundle.class_names = list(options.class_names)
    for name, stat in (("mean", bundle.mean), ("std", bundle.std)):
        if len(stat) != bundle.channels:
            raise ConfigError(
                f"data.{name} has {len(stat)} values but the images have {bundle.channels} channels."
            )
    return bundle


def build_augmentation(
    config: dict[str, Any], bundle: DataBundle
) -> tuple[Augmentation, MixOptions]:
    _, _, shared = AUGMENTS.split(config["augment"])
    mix = parse(MixOptions, shared, "augment")
    augmentation = AUGMENTS.build(
        config["augment"], image_size=bundle.image_size, channels=bundle.channels
    )
    return augmentation, mix


@dataclass
class Loaders:
    train: MemoryLoader | TorchLoader
    val: MemoryLoader | TorchLoader
    path: str


def choose_path(bundle: DataBundle, options: DataOptions, augmentation: Augmentation) -> str:
    """memory when the split is a tensor, fits the budget and needs no per-sample transform."""
    if options.loader == "torch" or not isinstance(bundle.train, TensorSplit):
        if options.loader == "memory":
            log.warning(
                "data.loader=memory: this data set is read per sample; using the DataLoader path."
            )
        return "torch"
    size_mb = (bundle.train.images.numel() + bundle.val.images.numel()) / 2**20
    if size_mb > options.memory_budget_mb:
        log.info(
            "data: %.0f MB exceeds data.memory_budget_mb=%.0f; using the DataLoader path.",
            size_mb,
            options.memory_budget_mb,
        )
        return "torch"
    if not augmentation.batchable:
        log.info("augment %s runs per sample; using the DataLoader path.", augmentation.description)
        return "torch"
    return "memory"


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
) -> Loaders:
    path = choose_path(bundle, options, augmentation)
    train_split = bundle.train
    if overfit_batches:
        # a few fixed batches, no augmentation: the model must be able to memorize them
        train_split = train_split.subset(overfit_batches * options.batch_size)
        augmentation, mixer = Augmentation(), None
    weights = _sample_weights(train_split) if options.sampler == "weighted" else None
    train_order = EpochOrder(
        len(train_split),
        options.batch_size,
        seed=seed,
        shuffle=not overfit_batches,
        drop_last=options.drop_last,
        rank=d.rank,
        world=d.world,
        weights=weights,
    )
    val_order = ShardOrder(
        len(bundle.val), max(1, options.batch_size // d.world), rank=d.rank, world=d.world
    )
    normalize = Normalize(bundle.mean, bundle.std, device)
    train_batches = DeviceBatches(normalize, augmentation, mixer, seed, d.rank, device)
    val_batches = DeviceBatches(normalize, None, None, seed, d.rank, device)
    if path == "memory":
        return Loaders(
            MemoryLoader(train_split, train_order, train_batches),
            MemoryLoader(bundle.val, val_order, val_batches),
            path,
        )
    train = _SeededSamples(train_split, augmentation.sample_train, bundle.image_size, seed)
    val = _SeededSamples(bundle.val, augmentation.sample_val, bundle.image_size, seed)
    return Loaders(
        TorchLoader(train, train_order, train_batches, options),
        TorchLoader(val, val_order, val_batches, options),
        path,
    )


def _sample_weights(split) -> torch.Tensor:
    """Inverse class frequency per sample, so each class is drawn equally often."""
    counts = torch.bincount(split.labels).double().clamp(min=1)
    return (1.0 / counts)[split.labels]


def build_model(config: dict[str, Any], bundle: DataBundle) -> nn.Module:
    model = MODELS.build(
        config["model"],
        num_classes=bundle.num_classes,
        in_channels=bundle.channels,
        image_size=bundle.image_size,
    )
    _, _, shared = MODELS.split(config["model"])
    apply_model_options(model, shared)
    probe(
        model,
        name=config["model"]["name"],
        num_classes=bundle.num_classes,
        in_channels=bundle.channels,
        image_size=bundle.image_size,
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
