"""Plain map-style Datasets in: a data builder may return ``(train, val)`` or ``(train, val,
test)`` of any ``torch.utils.data.Dataset`` whose items are ``(input, target)``.

An input is a uint8 or float tensor of any shape (non-square images included), a PIL image, a
tuple of tensors (the model is called as ``model(*inputs)``) or a dict of tensors
(``model(**inputs)``). A target is a class index (int) or a float tensor / number (regression,
multi-hot labels). What the run needs is read from the data: the input shape and channels from
the first training item, the number of classes from a ``classes`` / ``num_classes`` attribute,
``data.num_classes=``, or the targets (a ``targets`` attribute saves reading every item).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from athanor.data.base import DataBundle
from athanor.data.loaders import Batch, DeviceBatches
from athanor.data.options import DataOptions
from athanor.data.order import Order
from athanor.data.verify import SAMPLE_SEED, SAMPLE_SIZE, BadDataError
from athanor.errors import ConfigError, UserCodeError
from athanor.tasks.base import TargetInfo

log = logging.getLogger("athanor")

AUTO_SAMPLES = 1000  # training items read to measure data.normalize=auto


def is_plain(result: Any) -> bool:
    """A builder's return value is (train, val[, test]) of Datasets rather than a DataBundle."""
    return (
        isinstance(result, tuple | list)
        and len(result) in (2, 3)
        and all(_map_style(s) for s in result[:2])
        and (len(result) == 2 or result[2] is None or _map_style(result[2]))
    )


def _map_style(split: Any) -> bool:
    """A Dataset read by index: an IterableDataset has no length or index to sample by."""
    return (
        isinstance(split, Dataset)
        and not isinstance(split, IterableDataset)
        and hasattr(split, "__len__")
    )


def _as_tensor(value: Any) -> Any:
    """PIL images -> uint8 CHW tensors, numpy arrays -> tensors; tuples/dicts entry by entry."""
    if isinstance(value, dict):
        return {k: _as_tensor(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return tuple(_as_tensor(v) for v in value)
    if hasattr(value, "getbands"):  # a PIL image, without importing PIL here
        from torchvision.transforms.v2 import functional as F

        return F.pil_to_tensor(value)
    if not isinstance(value, torch.Tensor) and hasattr(value, "__array__"):
        return torch.as_tensor(value)
    return value


def _source(dataset: Dataset, i: int) -> tuple[Dataset, int]:
    """The user's own Dataset and index behind item ``i`` (through data.subset's Subsets)."""
    while isinstance(dataset, Subset):
        dataset, i = dataset.dataset, int(dataset.indices[i])
    return dataset, i


def where_item(dataset: Dataset, i: int, split: str) -> str:
    """'item 5 of the train split (Scans, my_project.data)': the user's own index and class."""
    source, index = _source(dataset, i)
    kind = type(source)
    return f"item {index} of the {split} split ({kind.__name__}, {kind.__module__})"


class _Items(Dataset):
    """The user's Dataset, its inputs made collatable (PIL -> tensor). Reading an item is the
    user's code: what it raises is reported as theirs, naming the split and the index."""

    def __init__(self, dataset: Dataset, split: str = "train"):
        self.dataset, self.split = dataset, split

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        try:
            item = self.dataset[i]
        except Exception as err:
            raise UserCodeError(
                f"the data set raised {type(err).__name__} reading "
                f"{where_item(self.dataset, i, self.split)}: {err}"
            ) from err
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ConfigError(
                f"{where_item(self.dataset, i, self.split)} is a {type(item).__name__}, not an "
                "(input, target) pair: a data set's items must be (input, target)."
            )
        return _as_tensor(item[0]), _target(item[1])


def _target(t: Any) -> torch.Tensor:
    t = torch.as_tensor(t)
    return t.long() if not t.is_floating_point() and t.dtype != torch.bool else t.float()


class PlainSplit:
    """One split of a user's Dataset (read per item in a DataLoader)."""

    def __init__(self, dataset: Dataset, split: str = "train"):
        self.dataset = dataset if isinstance(dataset, _Items) else _Items(dataset, split)

    def __len__(self) -> int:
        return len(self.dataset)

    def subset(self, n: int) -> PlainSplit:
        return self.select(torch.arange(min(n, len(self))))

    def select(self, indices: torch.Tensor) -> PlainSplit:
        return PlainSplit(Subset(self.dataset.dataset, indices.tolist()), self.dataset.split)

    def targets(self) -> torch.Tensor:
        """Every target, stacked: from a ``targets`` attribute when the Dataset has one."""
        raw = getattr(self.dataset.dataset, "targets", None)
        if raw is not None:
            return torch.stack([_target(t) for t in raw])
        return torch.stack([self.dataset[i][1] for i in range(len(self))])

    @property
    def labels(self) -> torch.Tensor:  # the weighted sampler's class per sample
        return self.targets()


def _describe_input(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"{str(x.dtype).removeprefix('torch.')} {'x'.join(map(str, x.shape))}"
    if isinstance(x, dict):
        return "dict(" + ", ".join(f"{k}: {_describe_input(v)}" for k, v in x.items()) + ")"
    if isinstance(x, tuple):
        return "(" + ", ".join(_describe_input(v) for v in x) + ")"
    raise ConfigError(
        f"A data set input is a {type(x).__name__}: inputs must be tensors, PIL images, or a "
        "tuple or dict of tensors."
    )


ImageKey = str | int | None  # where the image is in an input: a dict key, a tuple index, or itself


def find_image(x: Any) -> tuple[bool, ImageKey]:
    """(found, where) of the image in one item's input: the input itself when it is a [C, H, W]
    tensor, else the first such entry of a tuple or dict. Batched augmentations apply there."""
    if isinstance(x, torch.Tensor):
        return x.ndim == 3, None
    entries = x.items() if isinstance(x, dict) else enumerate(x)
    for key, value in entries:
        if isinstance(value, torch.Tensor) and value.ndim == 3:
            return True, key
    return False, None


def target_info(split: PlainSplit, options: DataOptions, dataset: Dataset) -> TargetInfo:
    targets = split.targets()
    if not targets.is_floating_point():
        named = getattr(dataset, "classes", None)
        num = options.num_classes or getattr(dataset, "num_classes", None)
        if num is None:
            num = len(named) if named is not None else int(targets.max()) + 1
        _check_labels(split, targets, int(num))
        column = getattr(dataset, "target_column", None)
        return TargetInfo(integer=True, num_classes=int(num), column=column, names=named)
    flat = targets.view(len(targets), -1).double()
    _refuse_targets(
        split,
        (~torch.isfinite(flat)).any(1),
        targets,
        "not a finite number",
        "Targets must be finite (no NaN or inf): fix or leave out those items in the Dataset.",
    )
    return TargetInfo(
        integer=False,
        width=flat.shape[1],
        mean=flat.mean(0).tolist(),
        std=flat.std(0).clamp(min=1e-12).tolist() if len(flat) > 1 else [1.0] * flat.shape[1],
        low=float(flat.min()),
        high=float(flat.max()),
        binary=bool(((flat == 0) | (flat == 1)).all()),
    )


def _refuse_targets(
    split: PlainSplit, bad_rows: torch.Tensor, targets: torch.Tensor, problem: str, fix: str
) -> None:
    """Refuse the training targets when any of ``bad_rows`` [N] is set, naming the first such
    item, its target and how many there are."""
    bad = bad_rows.nonzero()
    if len(bad):
        i = int(bad[0])
        raise BadDataError(
            f"data: {where_item(split.dataset.dataset, i, 'train')} has the target "
            f"{targets[i].tolist()}, {problem} ({len(bad)} item(s) in all). {fix}"
        )


def _check_labels(split: PlainSplit, targets: torch.Tensor, num: int) -> None:
    """Class labels are indices in [0, num): name the first item whose label is not."""
    _refuse_targets(
        split,
        ((targets < 0) | (targets >= num)).view(len(targets), -1).any(1),
        targets,
        f"a class label outside [0, {num})",
        f"Class labels are indices 0..{num - 1}: fix the labels, or set data.num_classes (or "
        "the Dataset's `classes`) to the true number of classes.",
    )


def check_sample(split: PlainSplit, verify: str) -> None:
    """A seeded sample of training items (every item with data.verify=all) is shaped alike:
    the same input shape and dtype and the same target shape as item 0, before the first step
    (else the first batch fails inside torch's collate, naming neither the item nor the data)."""
    if verify == "none":
        return
    n = len(split)
    picks = range(n) if verify == "all" or n <= SAMPLE_SIZE else _sampled(n)
    x0, y0 = split.dataset[0]
    first = (_shape_of(x0), tuple(y0.shape))
    for i in picks:
        x, y = split.dataset[i]
        if (_shape_of(x), tuple(y.shape)) != first:
            raise BadDataError(
                f"data: {where_item(split.dataset.dataset, i, 'train')} has input "
                f"{_describe_input(x)} and target shape {list(y.shape)}, but item 0 has input "
                f"{_describe_input(x0)} and target shape {list(y0.shape)}. Items are batched "
                "together, so every item needs the same shapes: pad, crop or resize inside the "
                "Dataset (checked on a seeded sample; data.verify=all checks every item, "
                "data.verify=none skips this)."
            )


def _shape_of(x: Any) -> Any:
    """An input's shapes (a tensor's, or each entry's of a tuple or dict): what collate stacks."""
    if isinstance(x, dict):
        return {k: _shape_of(v) for k, v in x.items()}
    if isinstance(x, tuple | list):
        return tuple(_shape_of(v) for v in x)
    return tuple(getattr(x, "shape", ()))


def _sampled(n: int) -> list[int]:
    gen = torch.Generator().manual_seed(SAMPLE_SEED)
    return sorted(torch.randperm(n, generator=gen)[:SAMPLE_SIZE].tolist())


def _measure(split: PlainSplit, seed: int) -> tuple[list[float], list[float]]:
    """Per-channel (dim 0 of an item) mean/std over a seeded sample of training inputs."""
    gen = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(split), generator=gen)[:AUTO_SAMPLES].tolist()
    xs = torch.stack([_scaled(split.dataset[i][0]) for i in picks])  # [N, C, ...]
    per_channel = xs.transpose(0, 1).reshape(xs.shape[1], -1).double()
    return per_channel.mean(1).tolist(), per_channel.std(1).clamp(min=1e-8).tolist()


def _scaled(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()


def from_datasets(splits: tuple | list, options: DataOptions, *, seed: int = 0) -> DataBundle:
    """A DataBundle around (train, val[, test]) Datasets (data.subset applied), with what was
    found logged."""
    train_set, val_set, *rest = splits
    train, val = PlainSplit(train_set), PlainSplit(val_set, "val")
    test = PlainSplit(rest[0], "test") if rest and rest[0] is not None else None
    if options.subset:
        train, val = train.subset(options.subset), val.subset(options.subset)
        test = test.subset(options.subset) if test is not None else None
    if len(train) == 0 or len(val) == 0:
        raise ConfigError("The data set's train and val splits must both hold items.")
    check_sample(train, options.verify)
    example, _ = train.dataset[0]
    single = isinstance(example, torch.Tensor)
    shape = tuple(example.shape) if single else ()
    has_image, image_key = find_image(example)
    image_shape = tuple(_entry(example, image_key).shape) if has_image else ()
    channels = image_shape[0] if has_image else 1
    info = target_info(train, options, train_set)
    mean, std = _statistics(
        train, train_set, options, single, channels if len(shape) == 3 else None, seed
    )
    classes = getattr(train_set, "classes", None)
    width = info.num_classes if info.integer else info.width
    names = [str(i) for i in range(width or 0)]
    if options.class_names is not None or (classes is not None and len(classes) == width):
        names = list(options.class_names or classes)
    bundle = DataBundle(
        train=train,  # type: ignore[arg-type]
        val=val,  # type: ignore[arg-type]
        test=test,  # type: ignore[arg-type]
        num_classes=int(width or 0),
        channels=channels,
        image_size=_image_size(image_shape or shape),
        class_names=names,
        mean=mean,
        std=std,
        info={"inputs": _describe_input(example), "input_shape": shape, "targets": info},
    )
    if getattr(train_set, "columns", None) is not None:  # a table: the checkpoint records them
        bundle.info["columns"] = [str(c) for c in train_set.columns]
    if has_image:
        bundle.info["image"] = image_key
    targets = (
        f"{info.num_classes} classes" if info.integer else f"float targets of width {info.width}"
    )
    log.info(
        "data: plain Datasets, inputs %s, %s, normalize=%s%s",
        bundle.info["inputs"],
        targets,
        options.normalize,
        "" if not mean else f" (mean {_fmt(mean)}, std {_fmt(std)})",
    )
    return bundle


def _image_size(shape: tuple[int, ...]) -> int:
    return shape[-1] if len(shape) >= 2 else (shape[0] if shape else 1)


def _entry(x: Any, key: ImageKey) -> Any:
    return x if key is None else x[key]


def _with_entry(x: Any, key: ImageKey, value: torch.Tensor) -> Any:
    if key is None:
        return value
    if isinstance(x, dict):
        return {**x, key: value}
    return tuple(value if i == key else v for i, v in enumerate(x))


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values[:8]) + (", ...]" if len(values) > 8 else "]")


def _statistics(
    train: PlainSplit,
    dataset: Dataset,
    options: DataOptions,
    single: bool,
    channels: int | None,
    seed: int,
) -> tuple[list[float], list[float]]:
    """(mean, std) per channel: explicit data.mean/std, measured (auto), the Dataset's own
    ``mean``/``std`` attributes, or none ([] : inputs as they come)."""
    if options.mean is not None and options.std is not None:
        return list(options.mean), list(options.std)
    if options.normalize == "auto":
        if not single:
            log.warning(
                "data.normalize=auto measures single-tensor inputs; these inputs are a tuple or "
                "dict, so they are left as they come (normalize them in the Dataset)."
            )
            return [], []
        return _measure(train, seed)
    if options.normalize == "dataset" and hasattr(dataset, "mean") and hasattr(dataset, "std"):
        return list(dataset.mean), list(dataset.std)  # type: ignore[attr-defined]
    return [], []


def example_input(bundle: DataBundle) -> Any:
    """One input with a batch dimension, as the model sees it (for the build-time probe and the
    model summary): the first training item of a plain split, zeros of the image shape else."""
    if not isinstance(bundle.train, PlainSplit):
        return torch.zeros(1, bundle.channels, bundle.image_size, bundle.image_size)
    x, _ = bundle.train.dataset[0]
    normalize = PlainNormalize(bundle.mean, bundle.std, bundle.info.get("input_shape", ()), "cpu")
    return normalize.inputs(_batched(x))


def _batched(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: v[None] for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(v[None] for v in x)
    return x[None]


def call_model(model: Callable, inputs: Any) -> Any:
    """model(x) for a tensor, model(*inputs) for a tuple, model(**inputs) for a dict."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


def to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    return tuple(to_device(v, device) for v in x)


class PlainNormalize:
    """uint8 -> float [0, 1]; then (x - mean) / std per channel (dim 1 of a batch) when given.
    Also what DeviceBatches calls ``normalize``: ``__call__`` scales an image batch (what batch
    augmentations see) and ``standardize`` applies the statistics afterwards."""

    def __init__(self, mean: list[float], std: list[float], shape: tuple[int, ...], device):
        view = (1, -1, *([1] * max(len(shape) - 1, 0)))
        self.mean = torch.tensor(mean, device=device).view(view) if mean else None
        self.std = torch.tensor(std, device=device).view(view) if std else None

    def __call__(self, x: Any) -> Any:
        if isinstance(x, dict):
            return {k: _scaled(v) if v.dtype == torch.uint8 else v for k, v in x.items()}
        if isinstance(x, tuple):
            return tuple(_scaled(v) if v.dtype == torch.uint8 else v for v in x)
        return _scaled(x)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.mean is None else (x - self.mean) / self.std

    def inputs(self, x: Any) -> Any:
        """A batch's inputs as the model sees them, without augmentation."""
        x = self(x)
        return self.standardize(x) if isinstance(x, torch.Tensor) else x


class PlainLoader:
    """Batches of a user's Dataset read in DataLoader workers (default collate: tensors,
    tuples and dicts), moved to the device, normalized, targets prepared for the loss. With
    ``augment`` (training), the image input (``image``: where it is) goes through the batch
    augmentations and mixing, drawn per (seed, epoch, batch) as on the image data paths."""

    path = "torch"

    def __init__(
        self,
        split: PlainSplit,
        order: Order,
        normalize: PlainNormalize,
        loss_targets: Callable[[torch.Tensor], torch.Tensor],
        options: DataOptions,
        device: torch.device,
        seed: int,
        augment: DeviceBatches | None = None,
        image: ImageKey = None,
    ):
        from athanor.data.loaders import _EpochBatches, workers_leave_stops_to_the_run

        self.sampler, self.order = _EpochBatches(order), order
        self.normalize, self.loss_targets, self.device = normalize, loss_targets, device
        self.augment, self.image = augment, image
        workers = options.workers() if len(split) >= 4096 else 0  # workers cost ~1 s to start
        self.loader = DataLoader(
            _Indexed(split.dataset),
            batch_sampler=self.sampler,
            num_workers=workers,
            pin_memory=options.pin_memory and device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),
            worker_init_fn=workers_leave_stops_to_the_run,
        )

    def __len__(self) -> int:
        return len(self.order)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        self.sampler.epoch, self.sampler.start = epoch, start
        for b, (inputs, targets) in enumerate(self.loader, start=start):
            x = to_device(inputs, self.device)
            y = targets.to(self.device, non_blocking=True)
            if y.is_floating_point():
                y = y.view(len(y), -1)  # [B, D] whatever the item's shape
            if self.augment is None:
                yield Batch(self.normalize.inputs(x), self.loss_targets(y), y)
                continue
            rest = x if self.image is None else self.normalize(x)  # a tuple's other entries
            image = self.augment(_entry(x, self.image), y, epoch, b, self.order.shard(b))
            mixed = image.targets is not y  # mixup/cutmix: soft targets (one image input only)
            targets = image.targets if mixed else self.loss_targets(y)
            yield Batch(_with_entry(rest, self.image, image.inputs), targets, y)


class _Indexed(Dataset):
    """Reads (epoch, i) keys (the shared batch sampler's) as item i."""

    def __init__(self, items: _Items):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]):
        return self.items[key[1]]
