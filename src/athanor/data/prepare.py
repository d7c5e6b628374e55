"""From a `data` config node to a ready DataBundle, around the registered builder:

- which group-wide `data.*` keys reach the builder (those its signature names: root, download,
  val_split, annotations, image_size), and refusing the ones it would silently ignore;
- what applies to every data set afterwards: data.subset, data.image_size (an in-memory set is
  resized once), data.mean / data.std / data.class_names, with their consistency checks.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import torch

from athanor.data.base import DataBundle, Split, TensorSplit
from athanor.data.options import DataOptions, data_options
from athanor.data.plain import AUTO_SAMPLES, _fmt, from_datasets, is_plain
from athanor.data.registry import DATASETS
from athanor.errors import ConfigError
from athanor.tasks.base import TargetInfo

log = logging.getLogger("athanor")


def _options_for(entry, options: DataOptions) -> dict[str, Any]:
    """The group-wide `data.*` values a builder names in its signature (root, val_split, ...).
    An unset one (None) leaves the builder's own default alone: a user's `blobs(num_classes=4)`
    keeps its 4 when data.num_classes is not given."""
    wanted = inspect.signature(entry.builder).parameters
    return {
        key: getattr(options, key)
        for key in DataOptions.keys()
        if key in wanted
        and not (
            getattr(options, key) is None and wanted[key].default is not inspect.Parameter.empty
        )
    }


def check_data(spec: dict[str, Any]) -> DataOptions:
    """Refuse `data.*` keys that the chosen data set would silently ignore (before any work)."""
    entry, _, shared = DATASETS.split(spec)
    options = data_options(shared)
    root = Path(options.root)
    if "root" in _options_for(entry, options) and root.exists() and not root.is_dir():
        raise ConfigError(
            f"data.root={options.root} is a file, not a folder: data set '{entry.name}' reads "
            "its files under data.root. Point data.root at the folder that holds them."
        )
    for key in ("val_split", "annotations", "download"):
        value = getattr(options, key)
        if value not in (None, False) and key not in _options_for(entry, options):
            users = [e.name for e in DATASETS.entries() if key in _options_for(e, options)]
            raise ConfigError(
                f"data.{key}={value!r} does not apply to data set '{entry.name}' (it has its own "
                f"validation set, or no files to list or fetch); remove it. data.{key} applies "
                f"to: {', '.join(users)}."
            )
    return options


def _resize(split: Split, size: int) -> Split:
    """A TensorSplit resized once to size x size (shorter side + centre crop); others as is."""
    if not isinstance(split, TensorSplit) or split.images.shape[-1] == size:
        return split
    from torchvision.transforms.v2 import functional as F

    images = F.center_crop(F.resize(split.images, [size], antialias=True), [size])
    return TensorSplit(images, split.labels)


def apply_data_options(built: Any, options: DataOptions, *, seed: int = 0) -> DataBundle:
    """data.subset / image_size / normalize / mean / std / class_names on top of what the builder
    returned (a DataBundle, or plain Datasets: data/plain.py)."""
    if is_plain(built):
        return from_datasets(built, options, seed=seed)
    if not isinstance(built, DataBundle):
        raise ConfigError(
            f"The data builder returned a {type(built).__name__}; return (train, val) or (train, "
            "val, test) Datasets whose items are (input, target), or a DataBundle."
        )
    bundle = _apply(built, options, seed)
    bundle.info["targets"] = TargetInfo(integer=True, num_classes=bundle.num_classes)
    return bundle


def _normalization(bundle: DataBundle, options: DataOptions, seed: int) -> None:
    """data.normalize: the data set's statistics (default), none, or measured (auto)."""
    if options.normalize == "none":
        bundle.mean, bundle.std = [0.0] * bundle.channels, [1.0] * bundle.channels
    elif options.normalize == "auto" and isinstance(bundle.train, TensorSplit):
        gen = torch.Generator().manual_seed(seed)
        picks = torch.randperm(len(bundle.train), generator=gen)[:AUTO_SAMPLES]
        x = bundle.train.images[picks].float().div(255.0).transpose(0, 1).flatten(1)  # [C, N*H*W]
        bundle.mean, bundle.std = x.mean(1).tolist(), x.std(1).clamp(min=1e-8).tolist()
        log.info(
            "data.normalize=auto: mean %s, std %s (%d training images)",
            _fmt(bundle.mean),
            _fmt(bundle.std),
            len(picks),
        )
    elif options.normalize == "auto":
        log.warning(
            "data.normalize=auto measures in-memory images only; using the data set's statistics."
        )


def _apply(bundle: DataBundle, options: DataOptions, seed: int) -> DataBundle:
    done: dict[int, Any] = {}  # val may be the test split itself: treat it once, keep it shared
    for name in ("train", "val", "test"):
        split = getattr(bundle, name)
        if split is not None and id(split) not in done:
            new = split.subset(options.subset) if options.subset else split
            done[id(split)] = _resize(new, options.image_size) if options.image_size else new
        setattr(bundle, name, done.get(id(split)))
    if options.image_size:
        bundle.image_size = options.image_size
    _normalization(bundle, options, seed)
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
    if len(bundle.class_names) != bundle.num_classes:
        raise ConfigError(
            f"data.class_names lists {len(bundle.class_names)} names but the data set has "
            f"{bundle.num_classes} classes."
        )
    return bundle


def builder_options(spec: dict[str, Any]) -> dict[str, Any]:
    """The `data.*` values to pass to the builder of ``spec`` (those its signature names)."""
    entry, _, shared = DATASETS.split(spec)
    return _options_for(entry, data_options(shared))
