"""MNIST, Fashion-MNIST, CIFAR-10/100 and SVHN: read from ``data.root`` into uint8
``TensorSplit``s so the memory data path applies.

The files are where torchvision puts them, and ``data.download=true`` uses torchvision's own
(checksummed) download. The MNIST idx files and the CIFAR python batches are read here, not by
torchvision's readers: CIFAR batches go through a plain-data unpickler (``pickle.load`` would run
code a crafted file names) and every file is checked (magic number, sizes, label counts), so a
damaged file is named instead of ending in a traceback. SVHN's .mat files are read by
torchvision (scipy's reader runs no code). Without ``data.download`` the files are only checked
for presence (hashing 170 MB on every start costs time). A missing file becomes a
``ConfigError`` saying where we looked and that ``data.download=true`` fetches it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from athanor.data.base import DataBundle, Split, TensorSplit
from athanor.data.registry import DATASETS
from athanor.data.split import train_val_test
from athanor.data.verify import BadDataError, check_classes, load_pickle, read_idx
from athanor.errors import ConfigError

DIGITS = [str(d) for d in range(10)]
LABELLED = (("images", 3), ("labels", 1))  # MNIST's idx files: kind and number of dimensions


def _no_md5(files: list) -> list:
    return [[*entry[:-1], None] for entry in files]


def _presence_only(cls: type) -> type:
    """A subclass of torchvision's SVHN class whose integrity check tests presence only."""
    split_list = {k: _no_md5([v])[0] for k, v in cls.split_list.items()}
    return type(cls.__name__, (cls,), {"split_list": split_list})


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
    except Exception as err:  # scipy's .mat reader on a truncated or foreign file
        raise BadDataError(
            f"data {name}: {where} cannot be read ({type(err).__name__}: {err}): the file is "
            "truncated or damaged. Replace it with the original file (data.download=true)."
        ) from None


def _chw(images: np.ndarray | torch.Tensor, layout: str) -> torch.Tensor:
    """uint8 [N, C, H, W] from the reader's layout ('nhw' or 'nchw')."""
    t = torch.as_tensor(images)
    return (t.unsqueeze(1) if layout == "nhw" else t).contiguous()


def _split(ds: Any, images: str, labels: str, layout: str) -> TensorSplit:
    return TensorSplit(
        _chw(getattr(ds, images), layout),
        torch.as_tensor(np.asarray(getattr(ds, labels)), dtype=torch.long),
    )


def _bundle(
    name: str,
    train: TensorSplit,
    test: TensorSplit,
    val_split: float | None,
    *,
    class_names: list[str],
    mean: list[float],
    std: list[float],
) -> DataBundle:
    for split, labels in (("train", train.labels), ("test", test.labels)):
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(class_names):
            raise BadDataError(
                f"data {name}: the {split} labels run from {int(labels.min())} to "
                f"{int(labels.max())}, outside 0..{len(class_names) - 1} ({len(class_names)} "
                "classes): a label file is damaged or belongs to another data set."
            )
    check_classes(class_names, train.labels.tolist(), name)
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


def _fetch(cls: type, root: str, **kwargs: Any) -> None:
    """data.download=true: torchvision's own download (checksummed), without its reading."""
    reader = object.__new__(cls)  # download() needs only the root (and SVHN's split fields)
    reader.root = root
    for key, value in kwargs.items():
        setattr(reader, key, value)
    reader.download()


def _missing(name: str, files: list[Path], root: str, where: Path) -> None:
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise ConfigError(
            f"data {name}: the files are missing under {where.resolve()} ({', '.join(absent)}). "
            "Pass data.download=true to download them there, or point data.root at the folder "
            f"that holds them (data.root={root!r} now)."
        )


def _mnist_split(name: str, raw: Path, prefix: str) -> TensorSplit:
    images = read_idx(raw / f"{prefix}-images-idx3-ubyte", name, ndim=3)
    labels = read_idx(raw / f"{prefix}-labels-idx1-ubyte", name, ndim=1)
    if len(images) != len(labels):
        raise BadDataError(
            f"data {name}: {raw}/{prefix}-images-idx3-ubyte holds {len(images)} images but "
            f"{prefix}-labels-idx1-ubyte holds {len(labels)} labels; one of them is damaged."
        )
    return TensorSplit(_chw(images, "nhw"), torch.from_numpy(labels.astype(np.int64)))


def _read_mnist(name: str, cls_name: str, root: str, download: bool) -> tuple[Split, Split]:
    """MNIST-family idx files under <root>/<ClassName>/raw, read and checked here."""
    from torchvision import datasets

    raw = Path(root) / cls_name / "raw"
    if download:
        _fetch(getattr(datasets, cls_name), root)
    files = [raw / f"{p}-{k}-idx{d}-ubyte" for p in ("train", "t10k") for k, d in LABELLED]
    _missing(name, files, root, raw)
    return _mnist_split(name, raw, "train"), _mnist_split(name, raw, "t10k")


def _cifar_batch(name: str, path: Path, label_key: str) -> tuple[np.ndarray, list]:
    batch = load_pickle(path, name)
    data = batch.get("data") if isinstance(batch, dict) else None
    labels = batch.get(label_key) if isinstance(batch, dict) else None
    ok = isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.shape[1:] == (3072,)
    if not ok or labels is None or len(labels) != len(data):
        shape = f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
        raise BadDataError(
            f"data {name}: {path} is not a whole CIFAR batch (data {shape}, "
            f"{len(labels) if labels is not None else 'no'} '{label_key}'; expected uint8 "
            "[N, 3072] pixels and N labels): the file is damaged or truncated. Replace it with the original "
            "file (data.download=true fetches the archive again)."
        )
    return data, list(labels)


def _read_cifar(name: str, cls_name: str, root: str, download: bool):
    """CIFAR python batches read through the plain-data unpickler (torchvision's reader would
    unpickle them with ``pickle.load``, running whatever a crafted file names)."""
    from torchvision import datasets

    cls = getattr(datasets, cls_name)
    folder = Path(root) / cls.base_folder
    if download:
        _fetch(cls, root)
    meta = folder / cls.meta["filename"]
    lists = {"train": cls.train_list, "test": cls.test_list}
    _missing(
        name, [meta, *(folder / f for entries in lists.values() for f, _ in entries)], root, folder
    )
    label_key = "labels" if cls_name == "CIFAR10" else "fine_labels"
    splits = []
    for entries in lists.values():
        batches = [_cifar_batch(name, folder / f, label_key) for f, _ in entries]
        images = np.concatenate([b[0] for b in batches]).reshape(-1, 3, 32, 32)
        labels = [y for b in batches for y in b[1]]
        splits.append(TensorSplit(torch.from_numpy(images), torch.as_tensor(labels)))
    names = load_pickle(meta, name)
    classes = names.get(cls.meta["key"]) if isinstance(names, dict) else None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise BadDataError(
            f"data {name}: {meta} holds no list of class names under {cls.meta['key']!r}."
        )
    return splits[0], splits[1], classes


def _read(
    name: str, cls_name: str, root: str, download: bool, val_split: float | None, **facts: Any
) -> DataBundle:
    if cls_name.startswith("CIFAR"):
        train, test, classes = _read_cifar(name, cls_name, root, download)
    else:
        train, test = _read_mnist(name, cls_name, root, download)
        classes = None
    names = facts.pop("class_names", None) or classes or _torchvision_classes(cls_name)
    return _bundle(name, train, test, val_split, class_names=names, **facts)


def _torchvision_classes(cls_name: str) -> list[str]:
    from torchvision import datasets

    return list(getattr(datasets, cls_name).classes)


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
        "svhn",
        train,
        load("test"),
        val_split,
        class_names=DIGITS,
        mean=[0.4377, 0.4438, 0.4728],
        std=[0.198, 0.201, 0.197],
    )
