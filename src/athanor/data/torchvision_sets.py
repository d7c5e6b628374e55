"""MNIST, Fashion-MNIST, CIFAR-10/100 and SVHN: read from ``data.root`` by torchvision's own
data-set classes, then held as uint8 ``TensorSplit``s so the memory data path applies.

Without ``data.download`` the files are only checked for presence (hashing 170 MB on every start
costs time; torchvision verifies the checksums when it downloads). A missing file becomes a
``ConfigError`` saying where we looked and that ``data.download=true`` fetches it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from athanor.data import DATASETS
from athanor.data.base import DataBundle, TensorSplit
from athanor.data.split import train_val_test
from athanor.errors import ConfigError

DIGITS = [str(d) for d in range(10)]


def _no_md5(files: list) -> list:
    return [[*entry[:-1], None] for entry in files]


def _presence_only(cls: type) -> type:
    """A subclass of a torchvision CIFAR/SVHN class whose integrity check tests presence only."""
    attrs: dict[str, Any] = {}
    if hasattr(cls, "train_list"):  # CIFAR-10/100
        attrs = dict(
            train_list=_no_md5(cls.train_list),
            test_list=_no_md5(cls.test_list),
            meta={**cls.meta, "md5": None},
        )
    if hasattr(cls, "split_list"):  # SVHN
        attrs = dict(split_list={k: _no_md5([v])[0] for k, v in cls.split_list.items()})
    return type(cls.__name__, (cls,), attrs)


def _open(name: str, cls: type, root: str, download: bool, where: Path, **kwargs: Any):
    reader = cls if download else _presence_only(cls)
    try:
        return reader(root, download=download, **kwargs)
    except RuntimeError as err:
        raise ConfigError(
            f"data {name}: the files are missing or unreadable under {where.resolve()} "
            f"({err}). Pass data.download=true to download them there, or point data.root at "
            f"the folder that holds them (data.root={root!r} now)."
        ) from err


def _chw(images: np.ndarray | torch.Tensor, layout: str) -> torch.Tensor:
    """uint8 [N, C, H, W] from the reader's layout ('nhw', 'nhwc' or 'nchw')."""
    t = torch.as_tensor(images)
    if layout == "nhw":
        t = t.unsqueeze(1)
    elif layout == "nhwc":
        t = t.permute(0, 3, 1, 2)
    return t.contiguous()


def _split(ds: Any, images: str, labels: str, layout: str) -> TensorSplit:
    return TensorSplit(
        _chw(getattr(ds, images), layout),
        torch.as_tensor(np.asarray(getattr(ds, labels)), dtype=torch.long),
    )


def _bundle(
    train: TensorSplit,
    test: TensorSplit,
    val_split: float | None,
    *,
    class_names: list[str],
    mean: list[float],
    std: list[float],
) -> DataBundle:
    train, val, test, val_source = train_val_test(train, test, val_split)
    return DataBundle(
        train=train,
        val=val,
        test=test,
        num_classes=len(class_names),
        channels=train.images.shape[1],
        image_size=train.images.shape[-1],
        class_names=list(class_names),
        mean=mean,
        std=std,
        info={"val": val_source},
    )


def _train_and_test(name: str, cls_name: str, root: str, download: bool) -> tuple[Any, Any]:
    """The torchvision reader's train and test objects (MNIST family and CIFAR: `train=` flag)."""
    from torchvision import datasets

    cls = getattr(datasets, cls_name)
    # where the readers look: <root>/<ClassName>/raw (MNIST family), <root>/<base_folder> (CIFAR)
    where = Path(root) / getattr(cls, "base_folder", f"{cls_name}/raw")
    train, test = (_open(name, cls, root, download, where, train=t) for t in (True, False))
    return train, test


def _read(
    name: str, cls_name: str, root: str, download: bool, val_split: float | None, **facts: Any
) -> DataBundle:
    train, test = _train_and_test(name, cls_name, root, download)
    layout = "nhw" if train.data.ndim == 3 else "nhwc"  # MNIST tensors vs CIFAR numpy HWC
    return _bundle(
        _split(train, "data", "targets", layout),
        _split(test, "data", "targets", layout),
        val_split,
        class_names=facts.pop("class_names", None) or list(train.classes),
        **facts,
    )


@DATASETS.register("mnist")
def mnist(*, root: str = "data", download: bool = False, val_split: float | None = None):
    """MNIST: 60k/10k 28x28 grey handwritten digits (torchvision reader, held in memory)."""
    return _read(
        "mnist", "MNIST", root, download, val_split, class_names=DIGITS, mean=[0.1307], std=[0.3081]
    )


@DATASETS.register("fashion_mnist")
def fashion_mnist(*, root: str = "data", download: bool = False, val_split: float | None = None):
    """Fashion-MNIST: 60k/10k 28x28 grey clothing images, 10 classes (held in memory)."""
    return _read(
        "fashion_mnist", "FashionMNIST", root, download, val_split, mean=[0.286], std=[0.353]
    )


@DATASETS.register("cifar10")
def cifar10(*, root: str = "data", download: bool = False, val_split: float | None = None):
    """CIFAR-10: 50k/10k 32x32 colour images, 10 classes (python batches, held in memory)."""
    mean, std = [0.4914, 0.4822, 0.4465], [0.247, 0.2435, 0.2616]
    return _read("cifar10", "CIFAR10", root, download, val_split, mean=mean, std=std)


@DATASETS.register("cifar100")
def cifar100(*, root: str = "data", download: bool = False, val_split: float | None = None):
    """CIFAR-100: 50k/10k 32x32 colour images, 100 fine classes (held in memory)."""
    mean, std = [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]
    return _read("cifar100", "CIFAR100", root, download, val_split, mean=mean, std=std)


@DATASETS.register("svhn")
def svhn(
    *,
    root: str = "data",
    download: bool = False,
    val_split: float | None = None,
    extra: bool = False,
) -> DataBundle:
    """SVHN: 73k/26k 32x32 house-number digits (.mat files; `extra: true` adds 531k to train)."""
    from torchvision.datasets import SVHN

    def load(split: str) -> TensorSplit:
        where = Path(root) / SVHN.split_list[split][1]
        ds = _open("svhn", SVHN, root, download, where, split=split)
        return _split(ds, "data", "labels", "nchw")

    train = load("train")
    if extra:
        more = load("extra")
        train = TensorSplit(
            torch.cat([train.images, more.images]), torch.cat([train.labels, more.labels])
        )
    return _bundle(
        train,
        load("test"),
        val_split,
        class_names=DIGITS,
        mean=[0.4377, 0.4438, 0.4728],
        std=[0.198, 0.201, 0.197],
    )
