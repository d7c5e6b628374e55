"""Hydra's own config errors, answered as athanor's: one paragraph, the closest valid key, exit 2.

Hydra reports a mistyped override (``trainer.epoch=5``) as "Key 'epoch' is not in struct ... use
+trainer.epoch=5", which invites adding a key nothing reads. ``run_hydra`` lets Hydra raise its
composition errors (HYDRA_FULL_ERROR for the call) and turns them into a Config error naming the
key, the closest valid one and the valid keys of that node; every other error is re-raised as is.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from athanor.cli.outcome import report
from athanor.errors import EXIT_USER_ERROR, yaml_message
from athanor.registry import closest

FULL_ERROR = "HYDRA_FULL_ERROR"


def run_hydra(main: Callable[[], Any]) -> Any:
    """Call a ``hydra.main`` function; its config errors end as athanor's Config error."""
    if os.environ.get(FULL_ERROR):  # the user asked for Hydra's raw errors
        return main()
    os.environ[FULL_ERROR] = "1"
    try:
        return main()
    except Exception as err:
        message = config_message(err)
        if message is None:
            raise
        report("Config error", message)
        sys.exit(EXIT_USER_ERROR)
    finally:
        os.environ.pop(FULL_ERROR, None)


def config_message(err: BaseException) -> str | None:
    """athanor's message for a Hydra composition error, or None for any other error."""
    from hydra.errors import CompactHydraException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    broken = yaml_message(err)
    if broken is not None:
        return broken
    if not isinstance(err, CompactHydraException):
        return None
    cause = err.__cause__
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and cause.full_key:
        parent = cause.parent_node
        keys = [str(k) for k in parent.keys()] if hasattr(parent, "keys") else []
        return unknown_key_message(str(cause.full_key), [k for k in keys if k != "hydra"], parent)
    text = str(err).strip()
    if "An item is already at" in text:
        key = text.split("'")[1]
        return f"{key} is already in the config: set it with {key}=<value> (without the +)."
    return " ".join(part for part in (text, str(cause or "")) if part).replace("\n", " ")


def unknown_key_message(full_key: str, valid: list[str], parent: Any = None) -> str:
    """'Unknown key trainer.epoch. Did you mean trainer.epochs? ...' for a key the config lacks."""
    node, _, key = full_key.rpartition(".")
    where = f"{node}." if node else ""
    hint = closest(key, valid).replace("'", f"'{where}", 1) if valid else ""
    argument = _builder_argument(node, key, parent)
    if argument:
        return argument
    return (
        f"Unknown config key {full_key}.{hint} Valid keys under {node or 'the top level'}: "
        f"{', '.join(valid) or '(none)'}. (`train --cfg job` prints the whole config.)"
    )


def _builder_argument(group: str, key: str, parent: Any) -> str | None:
    """A builder argument with a default that the chosen YAML file does not list."""
    from athanor.engine.build import REGISTRIES

    registry = REGISTRIES.get(group)
    name = parent.get("name") if hasattr(parent, "get") else None
    if registry is None or name not in registry:
        return None
    params = inspect.signature(registry.get(name).builder).parameters
    if key not in params or key in registry.runtime:
        return None
    return (
        f"{group} '{name}' takes the argument {key}, but conf/{group}/{name}.yaml does not list "
        f"it; add it with +{group}.{key}=<value> (or list it in that file)."
    )
