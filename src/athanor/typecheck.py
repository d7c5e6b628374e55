"""Check plain config values (from YAML / the command line) against type hints.

A hint may carry a ``Range`` (``Annotated[float, Positive]``): the one schema for a numeric key
is then its hint, read by the settings parser and by the registries alike. A range applies to a
number or to every number of a list; ``None`` (where the hint allows it) is not checked.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from athanor.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """Bounds for a number (finite unless ``finite=False``); open bounds exclude the limit."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    finite: bool = True
    what: str = "it"  # names the value in the message: "a learning rate must be > 0"

    def admits(self, value: float) -> bool:
        if self.finite and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return "a finite number"


Positive = Range(0, low_open=True)
NonNegative = Range(0)
Fraction = Range(0, 1)  # a probability or a share: 0 and 1 included


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is Annotated:
        return _describe(typing.get_args(hint)[0])
    if typing.get_origin(hint) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) in (Union, types.UnionType):
        return " | ".join(_describe(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "None"
    if typing.get_origin(hint) is not None:
        return str(hint).replace("typing.", "")
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any or hint is object:
        return True
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _matches(value, typing.get_args(hint)[0])
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


def _numbers(value: Any) -> list[float]:
    """The numbers a range applies to: the value itself, or the entries of a list / dict."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, list | tuple):
        return [n for v in value for n in _numbers(v)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    return []


def range_of(hint: Any) -> Range | None:
    """The ``Range`` an ``Annotated`` hint carries (also inside ``X | None``), or None."""
    if typing.get_origin(hint) is Annotated:
        return next((m for m in typing.get_args(hint)[1:] if isinstance(m, Range)), None)
    if typing.get_origin(hint) in (Union, types.UnionType):
        return next(filter(None, map(range_of, typing.get_args(hint))), None)
    return None


def _list_entry(hint: Any) -> Any:
    """The entry hint of a ``list[X]`` (also inside ``| None`` or ``Annotated``), else None."""
    if typing.get_origin(hint) is Annotated:
        return _list_entry(typing.get_args(hint)[0])
    if typing.get_origin(hint) in (Union, types.UnionType):
        found = [e for e in map(_list_entry, typing.get_args(hint)) if e is not None]
        return found[0] if found else None
    if typing.get_origin(hint) is list and typing.get_args(hint):
        return typing.get_args(hint)[0]
    return None


def check_value(key: str, value: Any, hint: Any) -> None:
    """Raise a ConfigError naming ``key`` when ``value`` does not fit ``hint`` (type and range)."""
    entry = _list_entry(hint)
    if isinstance(value, list | tuple) and entry is not None:
        bad = [v for v in value if not _matches(v, entry)]
        if bad and typing.get_origin(entry) is Literal:
            valid = ", ".join(str(a) for a in typing.get_args(entry))
            raise ConfigError(f"{key} has the entry {bad[0]!r}; valid entries: {valid}.")
        if bad:
            raise ConfigError(
                f"{key} has the entry {bad[0]!r} ({type(bad[0]).__name__}); expected a list of "
                f"{_describe(entry)}."
            )
    if not _matches(value, hint):
        raise ConfigError(
            f"{key}={value!r} has the wrong type ({type(value).__name__}); expected {_describe(hint)}."
        )
    bounds = range_of(hint)
    if bounds is not None:
        bad = [n for n in _numbers(value) if not bounds.admits(n)]
        if bad:
            raise ConfigError(
                f"{key}={value!r} is out of range: {bounds.what} must be {bounds.describe()}."
            )


def describe(hint: Any) -> str:
    """A hint in words, with its range: ``int | None, > 0`` (the reference's type column)."""
    bounds = range_of(hint)
    text = _describe(hint)
    return f"{text}, {bounds.describe()}" if bounds is not None else text
