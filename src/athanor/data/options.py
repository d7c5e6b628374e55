"""The group-wide `data.*` keys: batching, loading path, splits and normalization."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Literal

from athanor.data.verify import OnBadFile, Verify
from athanor.errors import ConfigError


@dataclass(frozen=True)
class DataOptions:
    batch_size: int = 64  # global batch: split evenly across DDP ranks
    num_workers: int | None = None  # DataLoader path; None: from the CPU count
    loader: Literal["auto", "memory", "torch"] = "auto"  # auto: memory when the split is a tensor
    root: str = "data"
    download: bool = False
    val_split: float | None = None  # fraction of train held out (seeded), when there is no val set
    subset: int | None = None  # first N samples of each split, for quick runs
    sampler: Literal["random", "weighted"] = "random"
    drop_last: bool = True  # training batches only; keeps every step the same size
    memory_budget_mb: float = 4096.0  # the memory path falls back to DataLoader above this
    pin_memory: bool = True  # CUDA only
    persistent_workers: bool = True
    prefetch_factor: int = 2
    mean: list[float] | None = None  # normalization; None: the data set's own
    std: list[float] | None = None
    image_size: int | None = None  # None: the data set's own
    class_names: list[str] | None = None  # None: from the data set
    annotations: str | None = None  # CSV data sets: file of `path,label` rows
    verify: Verify = "sample"  # files read per sample: decode a seeded sample / all / none first
    on_bad_file: OnBadFile = "error"  # skip: leave undecodable files out, listed in the log

    @staticmethod
    def keys() -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(DataOptions))

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size={self.batch_size} must be at least 1.")
        if self.val_split is not None and not 0 < self.val_split < 1:
            raise ConfigError(f"data.val_split={self.val_split} must be a fraction in (0, 1).")
        if self.subset is not None and self.subset < 1:
            raise ConfigError(f"data.subset={self.subset} must be a positive number of samples.")
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError(f"data.num_workers={self.num_workers} must be >= 0.")
        object.__setattr__(self, "root", os.path.expanduser(self.root))  # data.root=~/datasets

    def workers(self) -> int:
        """DataLoader workers: the configured number, or all but one core (at most 8)."""
        if self.num_workers is not None:
            return self.num_workers
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(0, min(8, (cores or 1) - 1))


def data_options(shared: dict[str, Any]) -> DataOptions:
    from athanor.config.settings import parse

    return parse(DataOptions, shared, "data")
