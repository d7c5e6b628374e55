"""The DATASETS registry (a leaf module: builders import it, nothing here imports them). The
group-wide `data.*` loading options are consumed by the loader code, not the builders; a builder
may name one in its signature to receive it (e.g. `root`)."""

from __future__ import annotations

from athanor.config.groups import DataOptions
from athanor.registry import Contract, Registry


def _usable(built: object) -> bool:
    from athanor.data.base import DataBundle
    from athanor.data.plain import is_plain

    return isinstance(built, DataBundle) or is_plain(built)


DATASETS: Registry = Registry(
    "data",
    options=DataOptions,
    returns=Contract(
        "(train, val) or (train, val, test) map-style Datasets (with __getitem__ and __len__) "
        "whose items are (input, target) pairs, or a DataBundle",
        _usable,
    ),
)
