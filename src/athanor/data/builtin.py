"""Data sets that need no files: `digits` (embedded in scikit-learn) and `fake` (synthetic)."""

from __future__ import annotations

from pathlib import Path

import torch

from athanor.data.base import DataBundle, TensorSplit
from athanor.data.registry import DATASETS
from athanor.data.split import holdout
from athanor.data.verify import check_classes


def to_uint8(x: torch.Tensor, max_value: float) -> torch.Tensor:
    return (x.float() * (255.0 / max_value)).round().clamp(0, 255).to(torch.uint8)


def _load_digits():
    """-> (pixels [N, 64] in 0..16, labels [N]): scikit-learn's own digits.csv.gz, read the way
    ``load_digits`` reads it but without importing scikit-learn (~1.3 s of start-up)."""
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if not path.exists():  # a future scikit-learn moved the file: take the slow road
        from sklearn.datasets import load_digits

        raw = load_digits()
        return raw.data, raw.target
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1], data[:, -1].astype(np.int64)


@DATASETS.register("digits")
def digits(*, val_split: float | None = 0.2) -> DataBundle:
    """scikit-learn's 1797 real 8x8 handwritten digits, shipped with the package (no download).

    There is no official test split: val is a seeded hold-out (data.val_split, default 0.2)."""
    pixels, target = _load_digits()
    images = to_uint8(torch.from_numpy(pixels), 16.0).view(-1, 1, 8, 8)  # [N, 1, 8, 8]
    split = TensorSplit(images, torch.from_numpy(target).long())
    train, val = holdout(split, val_split or 0.2)
    return DataBundle(
        train=train,
        val=val,
        num_classes=10,
        channels=1,
        image_size=8,
        class_names=[str(d) for d in range(10)],
        mean=[0.3],
        std=[0.38],
        info={"val": f"val = {val_split or 0.2:g} of the images held out (seeded)"},
    )


@DATASETS.register("fake")
def fake(
    *,
    num_train: int = 512,
    num_val: int = 128,
    image_size: int | None = 32,
    channels: int = 3,
    num_classes: int = 10,
    noise: float = 0.5,
    seed: int = 0,
) -> DataBundle:
    """Synthetic images in memory: a random prototype per class plus noise (learnable, instant)."""
    size = image_size or 32
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(num_classes, channels, size, size, generator=gen)

    def make(n: int) -> TensorSplit:
        labels = torch.randint(num_classes, (n,), generator=gen)
        x = prototypes[labels] + noise * torch.randn(n, channels, size, size, generator=gen)
        return TensorSplit(to_uint8(x.clamp(0, 1), 1.0), labels)

    train = make(num_train)
    names = [f"class_{i}" for i in range(num_classes)]
    check_classes(names, train.labels.tolist(), "fake")
    return DataBundle(
        train=train,
        val=make(num_val),
        num_classes=num_classes,
        channels=channels,
        image_size=size,
        class_names=names,
        mean=[0.5] * channels,
        std=[0.25] * channels,
    )
