"""Check plain config values (from YAML / the command line) against type hints."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

from athanor.errors import ConfigError


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any or hint is object:
        return True
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        args = typing.get_args(hint)
        inner = args[0] if args else Any
        return all(_matches(v, inner) for v in value)
    if origin is dict or hint is dict or origin is typing.Mapping:
        if not isinstance(value, dict):
            return False
        args = typing.get_args(hint)
        return not args or all(_matches(v, args[1]) for v in value.values())
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # hints we do not understand are not enforced


def check_value(key: str, value: Any, hint: Any) -> None:
    """Raise a ConfigError naming ``key`` when ``value`` does not fit ``hint``."""
    if not _matches(value, hint):
        raise ConfigError(
            f"{key}={value!r} has the wrong type ({type(value).__name__}); expected {_describe(hint)}."
        )
