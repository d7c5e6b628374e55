"""The group-wide `data.*` keys (declared with the other groups in config/groups.py)."""

from __future__ import annotations

from typing import Any

from athanor.config.groups import DataOptions


def data_options(shared: dict[str, Any]) -> DataOptions:
    return DataOptions.parse(shared, "data")


__all__ = ["DataOptions", "data_options"]
