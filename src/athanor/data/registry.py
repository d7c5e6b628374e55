"""The DATASETS registry (a leaf module: builders import it, nothing here imports them). The
group-wide `data.*` loading options are consumed by the loader code, not the builders; a builder
may name one in its signature to receive it (e.g. `root`)."""

from __future__ import annotations

from athanor.config.groups import DataOptions
from athanor.registry import Registry

DATASETS: Registry = Registry("data", options=DataOptions)
