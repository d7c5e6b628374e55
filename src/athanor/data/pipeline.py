"""The data-loading policy: which path a run's data takes (in memory or through a DataLoader),
the training order (seeded per epoch, sharded across ranks, weighted when asked), the evaluation
shards, and the loaders for plain Datasets. ``build_loaders`` is the one entry point."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from athanor.augment import Augmentation
from athanor.data.base import DataBundle, TensorSplit
from athanor.data.loaders import (
    DeviceBatches,
    MemoryLoader,
    Normalize,
    SeededSamples,
    TorchLoader,
    load_into_memory,
)
from athanor.data.options import DataOptions
from athanor.data.order import EpochOrder, ShardOrder
from athanor.data.plain import PlainLoader, PlainNormalize, PlainSplit
from athanor.distributed import Dist
from athanor.errors import ConfigError
from athanor.tasks import Task

log = logging.getLogger(__name__)


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
    train_split, augmentation, mixer = _overfit(
        bundle.train, augmentation, mixer, overfit_batches * options.batch_size
    )
    train_order = _train_order(train_split, options, seed, d, shuffle=not overfit_batches)
    normalize = Normalize(bundle.mean, bundle.std, device)
    train_batches = DeviceBatches(normalize, augmentation, mixer, seed, device)
    if path == "memory":
        train = MemoryLoader(train_split, train_order, train_batches, options.memory_budget_mb)
    else:
        samples = SeededSamples(train_split, augmentation.sample_train, bundle.image_size, seed)
        train = TorchLoader(samples, train_order, train_batches, options)

    def evaluation(split):
        order = _eval_order(split, options, d)
        batches = DeviceBatches(normalize, None, None, seed, device)
        if path == "memory":
            return MemoryLoader(split, order, batches, options.memory_budget_mb)
        samples = SeededSamples(split, augmentation.sample_val, bundle.image_size, seed)
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


def _overfit(split, augmentation: Augmentation, mixer, samples: int):
    """trainer.overfit_batches: the first ``samples`` items (0: all, as they are) and no
    augmentation or mixing, so the model must be able to memorize those few fixed batches.
    -> (split, augmentation, mixer)."""
    if not samples:
        return split, augmentation, mixer
    return split.subset(samples), Augmentation(sample_val=augmentation.sample_val), None


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
    train_split, augmentation, mixer = _overfit(
        bundle.train, augmentation, mixer, overfit_batches * options.batch_size
    )
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
