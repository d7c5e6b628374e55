"""Data sets: the DATASETS registry and the group-wide `data.*` loading options."""

from __future__ import annotations

from athanor.config.groups import DataOptions
from athanor.data.base import DataBundle, DatasetSplit, TensorSplit
from athanor.registry import Registry

# Keys every data config may carry; the loader code (not the dataset builder) consumes them.
# Builders may also name them in their signature to receive them (e.g. `root`).
DATASETS: Registry = Registry("data", options=DataOptions)

from athanor.data import builtin, folders, table, torchvision_sets  # noqa: E402,F401  (registers them)

__all__ = ["DATASETS", "DataBundle", "DataOptions", "DatasetSplit", "TensorSplit"]
