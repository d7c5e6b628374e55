"""Data sets: the DATASETS registry (data/registry.py) with athanor's builders registered in it,
and the group-wide `data.*` loading options."""

from athanor.config.groups import DataOptions
from athanor.data import builtin, folders, table, torchvision_sets  # noqa: F401  (registers them)
from athanor.data.base import DataBundle, DatasetSplit, TensorSplit
from athanor.data.registry import DATASETS

__all__ = ["DATASETS", "DataBundle", "DataOptions", "DatasetSplit", "TensorSplit"]
