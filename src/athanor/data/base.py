"""What a data builder returns: the splits plus the facts the rest of the run needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset


@dataclass
class TensorSplit:
    """A split held in memory as uint8 images [N, C, H, W] and int64 labels [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        assert self.images.dtype == torch.uint8 and self.images.ndim == 4, self.images.shape
        assert len(self.images) == len(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int) -> TensorSplit:
        return TensorSplit(self.images[:n], self.labels[:n])

    def select(self, indices: torch.Tensor) -> TensorSplit:
        return TensorSplit(self.images[indices], self.labels[indices])


class DatasetSplit:
    """A split read sample by sample (folders, CSV): ``dataset[i] -> (PIL image or uint8 CHW, label)``."""

    def __init__(self, dataset: Dataset, labels: Sequence[int]):
        self.dataset = dataset
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int) -> DatasetSplit:
        return self.select(torch.arange(min(n, len(self))))

    def select(self, indices: torch.Tensor) -> DatasetSplit:
        sub = torch.utils.data.Subset(self.dataset, indices.tolist())
        return DatasetSplit(sub, self.labels[indices].tolist())


Split = TensorSplit | DatasetSplit


@dataclass
class DataBundle:
    train: Split
    val: Split
    num_classes: int
    channels: int
    image_size: int
    class_names: list[str]
    mean: list[float]
    std: list[float]
    test: Split | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # files left out by data.on_bad_file=skip: {"file", "where", "reason"} each, for summary.json
    skipped_files: list[dict[str, str]] = field(default_factory=list)

    def inputs(self) -> str:
        """The input as one item holds it: 'uint8 3x32x32', 'float32 12x20', 'dict(...)'."""
        if "inputs" in self.info:
            return self.info["inputs"]
        return f"uint8 {self.channels}x{self.image_size}x{self.image_size}"

    def spec(self) -> dict[str, Any]:
        """What a checkpoint records of its data (plain values: ``torch.load(weights_only=True)``
        reads them), so `evaluate` and `athanor export` normalize inputs exactly as training did
        (data.normalize=auto measured them once) and can say when other data does not fit."""
        return {
            "inputs": self.inputs(),
            "input_shape": list(self.info.get("input_shape") or ()),
            "outputs": self.num_classes,
            "class_names": list(self.class_names),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            **({"columns": list(self.info["columns"])} if "columns" in self.info else {}),
        }

    def describe(self) -> str:
        kind = "in memory" if isinstance(self.train, TensorSplit) else "read per sample"
        shape = f"{self.num_classes} classes, {self.channels}x{self.image_size}x{self.image_size}"
        if "inputs" in self.info:  # plain Datasets: the targets are described with the task
            shape = f"inputs {self.info['inputs']}"
        test = f" / {len(self.test)} test" if self.test is not None else ""
        where = f" ({self.info['val']})" if "val" in self.info else ""
        return (
            f"{len(self.train)} train / {len(self.val)} val{test} samples{where}, {shape}, {kind}"
        )
