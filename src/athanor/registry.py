"""Registries: stable names in configs -> builder functions in code.

A config node is ``{name: <registered name>, **builder kwargs}``. Runtime objects (parameters,
optimizer, number of classes, ...) are passed by the building code and may not be set in YAML.
The group-wide keys (e.g. ``data.batch_size``) come from the group's typed option class
(config/groups.py), passed as ``options``; they are handled by the group's build code rather than
by each builder. Builder arguments are checked against the builder's signature: names, types and
any ``Range`` in an ``Annotated`` hint (typecheck.py), the same schema reader as the settings.

Each entry remembers where it was registered (``origin``: the module, or the plugin that loaded
it), so `athanor list` can say so and a name registered twice names both places. A builder
receives only the runtime arguments its signature names (or all of them with ``**kwargs``).
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from athanor.errors import ConfigError, UserCodeError
from athanor.typecheck import check_value

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    name: str
    builder: Callable[..., Any]
    description: str
    origin: str = ""  # the module that registered it ("athanor.models.simple", "my_project.nets")


# Set by athanor.plugins while an entry-point plugin loads, so its entries say which plugin.
_loading_plugin: list[str] = []


def origin_of(fn: Callable[..., Any]) -> str:
    """Where ``fn`` comes from: its module, plus the plugin being loaded, if any."""
    module = getattr(fn, "__module__", None) or "?"
    return f"{module} (plugin {_loading_plugin[-1]})" if _loading_plugin else module


class BuilderError(UserCodeError):
    """A builder raised: its own traceback is the cause; this line says which builder failed."""


class ContractError(ConfigError):
    """A builder returned something its group cannot use (a dict for a model, an int for a
    loss): one paragraph naming the builder, what it returned and what the group needs."""


@dataclass(frozen=True)
class Contract:
    """What every builder of a group must return: ``needs`` in words, ``holds`` the check."""

    needs: str
    holds: Callable[[Any], bool]


def closest(name: str, options: Iterable[str]) -> str:
    """' Did you mean X?' for the nearest valid option, or '' when nothing is close."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" Did you mean '{match[0]}'?" if match else ""


class Registry(Generic[T]):
    def __init__(
        self,
        group: str,
        *,
        runtime: Iterable[str] = (),
        options: Any = None,
        returns: Contract | None = None,
    ):
        self.group = group
        self.returns = returns  # checked on every built object, the user's builders' above all
        self.runtime = frozenset(runtime)  # passed by code, never by config
        self.options = options  # the group-wide option class: .keys(), .parse(values, group)
        # group-wide keys, handled outside the builder
        self.shared = frozenset(options.keys() if options is not None else ())
        self._entries: dict[str, Entry] = {}
        self._fallback: Callable[[str], Entry | None] | None = None

    def register(self, name: str, description: str | None = None) -> Callable:
        """Decorator: ``@MODELS.register("resnet18")``. The docstring's first line describes it."""

        def wrap(fn: Callable[..., T]) -> Callable[..., T]:
            origin = origin_of(fn)
            if name in self._entries:
                first = self._entries[name].origin
                raise ConfigError(
                    f"{self.group} name {name!r} is registered twice: first by {first}, again by "
                    f"{origin}. Give one of them another name (names must be unique per group)."
                )
            doc = description or (inspect.getdoc(fn) or "").split("\n")[0]
            self._entries[name] = Entry(name, fn, doc, origin)
            return fn

        return wrap

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: Any) -> Entry:
        if not isinstance(name, str) or name not in self._entries:
            valid = ", ".join(self.names())
            raise ConfigError(
                f"Unknown {self.group} name {name!r}.{closest(str(name), self._entries)} "
                f"Registered {self.group} names: {valid}. "
                f"(`athanor list {self.group}` describes each.)"
            )
        return self._entries[name]

    def split(self, spec: Mapping[str, Any]) -> tuple[Entry, dict[str, Any], dict[str, Any]]:
        """-> (entry, builder kwargs, shared kwargs); validates names, keys and types."""
        if not isinstance(spec, Mapping) or "name" not in spec:
            raise ConfigError(
                f"The `{self.group}` config must be a mapping with a `name:` key naming a "
                f"registered builder, got {spec!r}. Registered: {', '.join(self.names())}."
            )
        entry = self.get(spec["name"])
        kwargs = {k: v for k, v in spec.items() if k != "name" and k not in self.shared}
        shared = {k: v for k, v in spec.items() if k in self.shared}
        self._check_kwargs(entry, kwargs)
        return entry, kwargs, shared

    def check(self, spec: Mapping[str, Any]) -> Any:
        """Validate a config node against its builder's signature and the group-wide option
        class without building anything; -> the typed group-wide options (None without a class)."""
        _, _, shared = self.split(spec)
        return self.options.parse(shared, self.group) if self.options is not None else None

    def build(self, spec: Mapping[str, Any], **runtime: Any) -> T:
        """Call the builder with the config's kwargs and the runtime arguments it names.

        Only validation makes config errors: the config was checked against the builder's typed
        signature before this call, so a ConfigError the builder raises stays one and anything
        else is a bug. A bug in athanor's own builder propagates as it is (its traceback, exit
        1); one in a user's builder is re-raised as BuilderError naming the builder, with the
        user's traceback kept. What it returns is checked against the group's contract."""
        entry, kwargs, _ = self.split(spec)
        wanted = self.runtime_for(entry, runtime)
        try:
            built = entry.builder(**wanted, **kwargs)
        except ConfigError:
            raise
        except Exception as err:
            if entry.origin.startswith("athanor."):
                raise
            raise BuilderError(self._failed(entry, err)) from err
        self.check_returned(entry, built)
        return built

    def check_returned(self, entry: Entry, built: Any) -> None:
        """Refuse what ``entry``'s builder returned when it breaks the group's contract."""
        if self.returns is None or self.returns.holds(built):
            return
        shown = repr(built)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ContractError(
            f"{self.group} builder '{entry.name}' ({entry.origin}) returned a "
            f"{type(built).__name__} ({shown}), but a {self.group} builder must return "
            f"{self.returns.needs}. Change what '{entry.name}' returns."
        )

    def _failed(self, entry: Entry, err: Exception) -> str:
        return f"{self.group} builder '{entry.name}' ({entry.origin}) raised {type(err).__name__}: {err}"

    @staticmethod
    def runtime_for(entry: Entry, runtime: dict[str, Any]) -> dict[str, Any]:
        """The runtime arguments ``entry``'s builder names (all of them with ``**kwargs``)."""
        params = inspect.signature(entry.builder).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return runtime
        return {k: v for k, v in runtime.items() if k in params}

    def _check_kwargs(self, entry: Entry, kwargs: dict[str, Any]) -> None:
        sig = inspect.signature(entry.builder)
        params = sig.parameters
        clash = sorted(set(kwargs) & self.runtime)
        if clash:
            raise ConfigError(
                f"{self.group} '{entry.name}': {', '.join(clash)} is set by the runner at run time "
                f"(from the data, model or schedule) and cannot be given in the config; remove it."
            )
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        configurable = [
            n
            for n, p in params.items()
            if n not in self.runtime and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        unknown = [k for k in kwargs if k not in params and not accepts_any]
        if unknown:
            bad = unknown[0]
            raise ConfigError(
                f"{self.group} '{entry.name}' has no argument {bad!r}.{closest(bad, configurable)} "
                f"Valid arguments of {self.group} '{entry.name}': "
                f"{', '.join(configurable) or '(none)'}"
                + (f"; group-wide keys: {', '.join(sorted(self.shared))}" if self.shared else "")
                + "."
            )
        missing = [
            n
            for n in configurable
            if params[n].default is inspect.Parameter.empty and n not in kwargs
        ]
        if missing:
            raise ConfigError(
                f"{self.group} '{entry.name}' needs argument(s) {', '.join(missing)}; "
                f"add them to conf/{self.group}/{entry.name}.yaml or the command line."
            )
        hints = typing.get_type_hints(entry.builder, include_extras=True)
        for key, value in kwargs.items():
            if key in hints:
                check_value(f"{self.group}.{key}", value, hints[key])
