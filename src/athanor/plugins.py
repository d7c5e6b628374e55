"""Loading the user's own code before anything is built: the `imports` config key and the
`athanor.plugins` entry-point group.

- ``imports: [my_project.nets, tools/extra.py]``: dotted module names, found with the current
  folder first on ``sys.path``, or paths to ``.py`` files (relative to the current folder).
- An installed package registers through ``[project.entry-points."athanor.plugins"]``: the
  entry point names a module (imported) or a callable (imported, then called with no argument).

Both are loaded once per process (a DDP worker loads them again: it receives the plain config).
A module that cannot be found is a ConfigError; one that raises while importing is the user's
bug and keeps its traceback (ImportFailed names the module).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from athanor import registry
from athanor.errors import ConfigError, UserCodeError

GROUP = "athanor.plugins"

_loaded: set[str] = set()  # imports and plugins already loaded by this process


class ImportFailed(UserCodeError):
    """A module of `imports` or a plugin raised while importing (the cause is their error)."""


def is_path(item: str) -> bool:
    return item.endswith(".py") or os.sep in item or "/" in item


def _import_file(item: str) -> ModuleType:
    path = Path(item).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(
            f"imports: no file {item!r} (looked for {path}, relative to the current folder "
            f"{Path.cwd()}). Give a path to a .py file or a dotted module name."
        )
    name = f"athanor_user.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so pickling, dataclasses and relative lookups find it
    spec.loader.exec_module(module)
    return module


def _find(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _import_module(name: str) -> ModuleType:
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # the project's own packages, as `python -m` would find them
    if not _find(name):
        raise ConfigError(
            f"imports: no module {name!r} found, searched the current folder {cwd} and the "
            f"installed packages. Give a dotted module name importable from there (a folder "
            f"{name.split('.')[0]}/ with __init__.py here, or an installed package), or a path "
            f"to a .py file."
        )
    return importlib.import_module(name)


def import_user_modules(items: Iterable[str] | None) -> None:
    """Import each module of the `imports` key once (names or .py paths)."""
    for item in items or ():
        if not isinstance(item, str) or not item:
            raise ConfigError(
                f"imports: each entry must be a module name or a .py path, got {item!r}."
            )
        key = str(Path(item).resolve()) if is_path(item) else item
        if key in _loaded:
            continue
        try:
            _import_file(item) if is_path(item) else _import_module(item)
        except (ConfigError, UserCodeError):
            raise
        except BaseException as err:
            if isinstance(err, KeyboardInterrupt | SystemExit):
                raise
            raise ImportFailed(f"imports: module {item!r} raised while importing") from err
        _loaded.add(key)


def load_plugins() -> list[str]:
    """Load every `athanor.plugins` entry point once; returns their names."""
    names = []
    for ep in entry_points(group=GROUP):
        names.append(ep.name)
        key = f"plugin:{ep.name}={ep.value}"
        if key in _loaded:
            continue
        registry._loading_plugin.append(ep.name)
        try:
            loaded = ep.load()
            if callable(loaded):
                loaded()
        except (ConfigError, UserCodeError):
            raise
        except Exception as err:
            raise ImportFailed(
                f"plugin {ep.name!r} ({ep.value}, entry point group {GROUP}) raised while loading"
            ) from err
        finally:
            registry._loading_plugin.pop()
        _loaded.add(key)
    return names


def load_user_code(imports: Iterable[str] | None) -> None:
    """Plugins, then the config's `imports`: called once at the start of a run and of evaluate."""
    load_plugins()
    import_user_modules(imports)
