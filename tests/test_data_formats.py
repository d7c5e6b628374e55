"""Writers for the on-disk formats torchvision reads (tiny, random, known content), so tests load
them through the real readers with no download."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def images(n: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (uint8 images [n, *shape], int labels [n] in 0..9), reproducible."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, 10, n)


def write_idx(path: Path, array: np.ndarray) -> None:
    """The idx format of MNIST: 0, 0, type 0x08 (uint8), ndim, then big-endian int32 dims."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str, n_train: int = 40, n_test: int = 20) -> dict:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        x, y = images(n, (28, 28), seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y.astype(np.uint8))
        out[prefix] = (x[:, None], y)  # [N, 1, 28, 28]
    return {"train": out["train"], "test": out["t10k"]}


def _pickle(path: Path, obj: dict) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path, per_batch: int = 8, n_test: int = 16) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for i in range(1, 6):
        x, y = images(per_batch, (3, 32, 32), i)
        _pickle(
            folder / f"data_batch_{i}", {"data": x.reshape(per_batch, -1), "labels": y.tolist()}
        )
        xs.append(x)
        ys.append(y)
    tx, ty = images(n_test, (3, 32, 32), 9)
    _pickle(folder / "test_batch", {"data": tx.reshape(n_test, -1), "labels": ty.tolist()})
    _pickle(folder / "batches.meta", {"label_names": CIFAR10_NAMES})
    return {"train": (np.concatenate(xs), np.concatenate(ys)), "test": (tx, ty)}


def write_cifar100(root: Path, names: list[str], n_train: int = 30, n_test: int = 12) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, n, seed in (("train", n_train, 3), ("test", n_test, 4)):
        x, _ = images(n, (3, 32, 32), seed)
        y = np.random.default_rng(seed).integers(0, 100, n)
        _pickle(folder / split, {"data": x.reshape(n, -1), "fine_labels": y.tolist()})
        out[split] = (x, y)
    _pickle(folder / "meta", {"fine_label_names": names})
    return out


def write_svhn(root: Path, n_train: int = 24, n_test: int = 10) -> dict:
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n, seed in (("train", n_train, 5), ("test", n_test, 6)):
        x, y = images(n, (3, 32, 32), seed)
        stored = np.where(y == 0, 10, y)  # SVHN stores the digit 0 as label 10
        savemat(root / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": stored[:, None]})
        out[split] = (x, y)
    return out


def write_png_tree(folder: Path, classes: list[str], per_class: int, size: int, seed: int) -> None:
    """<folder>/<class>/<i>.png, RGB, ``size`` x ``size``."""
    import torch
    from torchvision.io import write_png

    x, _ = images(len(classes) * per_class, (3, size, size), seed)
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            write_png(torch.from_numpy(x[c * per_class + i]), str(folder / name / f"{i}.png"))


# -- loading each format through the real config and readers ---------------------------------

import pytest  # noqa: E402
import torch  # noqa: E402

from athanor.engine.build import build_data  # noqa: E402
from athanor.errors import ConfigError  # noqa: E402
from conftest import CONF, compose  # noqa: E402


def cifar100_names() -> list[str]:
    import yaml

    return yaml.safe_load((CONF / "data" / "cifar100.yaml").read_text())["class_names"]


WRITERS = {
    "mnist": lambda root: write_mnist(root, "MNIST"),
    "fashion_mnist": lambda root: write_mnist(root, "FashionMNIST"),
    "cifar10": write_cifar10,
    "cifar100": lambda root: write_cifar100(root, cifar100_names()),
    "svhn": write_svhn,
}
SHAPES = {"mnist": (1, 28), "fashion_mnist": (1, 28), "cifar10": (3, 32), "cifar100": (3, 32)}


def load(name: str, root, *overrides: str):
    return build_data(compose(f"data={name}", f"data.root={root}", *overrides))[0]


@pytest.mark.parametrize("name", list(WRITERS))
def test_each_format_loads_into_memory_with_its_official_test_split(name, tmp_path):
    truth = WRITERS[name](tmp_path)
    bundle = load(name, tmp_path)
    channels, size = SHAPES.get(name, (3, 32))
    for split, (x, y) in (("train", truth["train"]), ("test", truth["test"])):
        got = getattr(bundle, split)
        assert got.images.dtype == torch.uint8 and got.images.shape == (
            len(y),
            channels,
            size,
            size,
        )
        assert torch.equal(got.images, torch.from_numpy(x)), f"{name} {split} pixels differ"
        assert got.labels.tolist() == y.tolist()
    assert bundle.val is bundle.test, "without data.val_split, val is the official test split"
    assert (bundle.channels, bundle.image_size) == (channels, size)
    assert len(bundle.class_names) == bundle.num_classes == (100 if name == "cifar100" else 10)


def test_class_names_come_from_the_files(tmp_path):
    from athanor.data import DATASETS

    write_cifar10(tmp_path / "c10")
    write_cifar100(tmp_path / "c100", [f"n{i}" for i in range(100)])
    write_mnist(tmp_path / "fm", "FashionMNIST")
    assert DATASETS.build({"name": "cifar10"}, root=str(tmp_path / "c10")).class_names == (
        CIFAR10_NAMES
    )
    c100 = DATASETS.build({"name": "cifar100"}, root=str(tmp_path / "c100"))
    assert c100.class_names[:2] == ["n0", "n1"] and c100.num_classes == 100
    fm = DATASETS.build({"name": "fashion_mnist"}, root=str(tmp_path / "fm"))
    assert fm.class_names == compose("data=fashion_mnist")["data"]["class_names"]


def test_svhn_zero_is_label_zero_and_extra_adds_to_train(tmp_path):
    truth = write_svhn(tmp_path)
    bundle = load("svhn", tmp_path)
    assert 0 in truth["train"][1] and bundle.train.labels.max() <= 9
    assert bundle.train.labels.tolist() == truth["train"][1].tolist()
    with pytest.raises(ConfigError, match="extra_32x32.mat"):
        load("svhn", tmp_path, "data.extra=true")


def test_val_split_holds_out_train_and_keeps_the_official_test(tmp_path):
    write_cifar10(tmp_path)
    a = load("cifar10", tmp_path, "data.val_split=0.25")
    b = load("cifar10", tmp_path, "data.val_split=0.25", "seed=7")
    assert (len(a.train), len(a.val), len(a.test)) == (30, 10, 16)
    assert torch.equal(a.val.images, b.val.images), "the hold-out must not move with the seed"
    rows = {tuple(img.flatten().tolist()) for img in a.train.images}
    assert not any(tuple(img.flatten().tolist()) in rows for img in a.val.images)
    assert "held out" in a.describe() and "official test" in load("cifar10", tmp_path).describe()


@pytest.mark.parametrize("name", list(WRITERS))
def test_missing_files_say_where_and_how_to_download(name, tmp_path):
    with pytest.raises(ConfigError) as err:
        load(name, tmp_path / "empty")
    message = str(err.value)
    assert str((tmp_path / "empty").resolve()) in message and "data.download=true" in message


def test_root_may_start_with_a_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_mnist(tmp_path / "datasets", "MNIST")
    # Hydra needs the quotes on the command line (or the shell's $HOME); a YAML root: ~/x works too
    assert len(load("mnist", "'~/datasets'").train) == 40


def test_subset_and_image_size_apply_to_every_split(tmp_path):
    write_cifar10(tmp_path)
    bundle = load("cifar10", tmp_path, "data.subset=5", "data.image_size=16")
    assert len(bundle.train) == len(bundle.val) == 5 and bundle.val is bundle.test
    assert bundle.train.images.shape == (5, 3, 16, 16) and bundle.image_size == 16


# -- image folders and CSV files ----------------------------------------------------------------


def test_imagefolder_with_train_val_and_test_folders(tmp_path):
    write_png_tree(tmp_path / "train", ["cat", "dog", "eel"], per_class=3, size=12, seed=1)
    write_png_tree(tmp_path / "val", ["cat", "eel"], per_class=2, size=12, seed=2)  # no dog
    write_png_tree(tmp_path / "test", ["dog"], per_class=1, size=12, seed=3)
    from PIL import Image

    Image.new("RGB", (5, 7), (255, 0, 0)).save(tmp_path / "train" / "eel" / "red.bmp")  # via PIL
    bundle = load("imagefolder", tmp_path, "data.image_size=8")
    assert bundle.class_names == ["cat", "dog", "eel"] and bundle.num_classes == 3
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (10, 4, 1)
    red, label = bundle.train.dataset[9]
    assert red.shape == (3, 7, 5) and red[:, 0, 0].tolist() == [255, 0, 0] and label == 2
    assert bundle.val.labels.tolist() == [0, 0, 2, 2], "val labels use the train folder's indices"
    image, label = bundle.test.dataset[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 12, 12) and label == 1


def test_imagefolder_single_folder_needs_val_split(tmp_path):
    write_png_tree(tmp_path, ["a", "b"], per_class=5, size=8, seed=1)
    with pytest.raises(ConfigError, match="data.val_split"):
        load("imagefolder", tmp_path)
    bundle = load("imagefolder", tmp_path, "data.val_split=0.2")
    assert (len(bundle.train), len(bundle.val)) == (8, 2) and bundle.test is None


def test_imagefolder_refuses_empty_roots_and_ambiguous_splits(tmp_path):
    with pytest.raises(ConfigError, match="holds no class folders"):
        load("imagefolder", tmp_path)
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no valid file"):
        load("imagefolder", tmp_path, "data.val_split=0.1")
    write_png_tree(tmp_path / "train", ["a", "b"], per_class=2, size=8, seed=1)
    write_png_tree(tmp_path / "val", ["a"], per_class=1, size=8, seed=2)
    with pytest.raises(ConfigError, match="already has a validation set"):
        load("imagefolder", tmp_path, "data.val_split=0.1")


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))


def test_csv_annotations_relative_to_root(tmp_path):
    write_png_tree(tmp_path / "img", ["x"], per_class=6, size=10, seed=1)
    labels = ["10", "2", "2", "10", "7", "2"]
    write_csv(tmp_path / "train.csv", [(f"img/x/{i}.png", lab) for i, lab in enumerate(labels)])
    write_csv(tmp_path / "val.csv", [("img/x/0.png", "7")])
    bundle = load("csv", tmp_path, "data.annotations=train.csv", "data.val_annotations=val.csv")
    assert bundle.class_names == ["2", "7", "10"], "numeric labels sort numerically"
    assert bundle.train.labels.tolist() == [2, 0, 0, 2, 1, 0] and bundle.val.labels.tolist() == [1]
    image, label = bundle.train.dataset[4]
    assert image.shape == (3, 10, 10) and label == 1
    held = load("csv", tmp_path, "data.annotations=train.csv", "data.val_split=0.5")
    assert len(held.train) == len(held.val) == 3


def test_csv_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="needs data.annotations"):
        load("csv", tmp_path)
    write_csv(tmp_path / "a.csv", [("missing.png", "cat")])
    with pytest.raises(ConfigError, match="do not exist"):
        load("csv", tmp_path, "data.annotations=a.csv", "data.val_split=0.5")
    (tmp_path / "b.csv").write_text("file,cls\nx.png,1\n")
    with pytest.raises(ConfigError, match="path_column"):
        load("csv", tmp_path, "data.annotations=b.csv", "data.val_split=0.5")
