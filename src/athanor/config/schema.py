"""The one schema reader: a typed dataclass from a plain dict, every value checked against its
field's hint (type and ``Range``, see typecheck.py) and unknown keys refused with the closest."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from athanor.errors import ConfigError
from athanor.registry import closest
from athanor.typecheck import check_value

S = TypeVar("S")


def parse(cls: type[S], values: dict[str, Any] | None, prefix: str) -> S:
    """Build dataclass ``cls`` from a plain dict, recursing into nested dataclass fields."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise ConfigError(
            f"Unknown setting {prefix}.{unknown[0]}.{closest(unknown[0], fields)} "
            f"Valid keys under {prefix}: {', '.join(fields)}."
        )
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = parse(hint, value, f"{prefix}.{name}")
        else:
            check_value(f"{prefix}.{name}", value, hint)
            kwargs[name] = value
    return cls(**kwargs)
