"""What a sweep varies, read from the run folder, and the param views built from it.

Hydra writes a job's overrides to ``<job>/.hydra/overrides.yaml`` and the sweep's own command-line
overrides to ``<sweep>/multirun.yaml`` (the job folder's parent). A key is swept when the job's
value differs from what the sweep was given (``optim.lr=1.0e-3,1.0e-2`` -> ``optim.lr=1.0e-3``) or
when only the job has it (a sweeper's search space, e.g. Optuna's ``hydra.sweeper.params``).
Plain YAML is read here; nothing imports Hydra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from athanor.record.folder import read_yaml_or_none

# the keys a reader of a sweep table wants beside what varied
HEADLINE = (
    "model.name",
    "data.name",
    "optim.name",
    "optim.lr",
    "data.batch_size",
    "trainer.epochs",
)
NOT_SETTINGS = ("hydra.", "resume", "name")


def _overrides(items: Any) -> dict[str, str]:
    """["optim.lr=0.1", "+x=1"] -> {"optim.lr": "0.1", "x": "1"}."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        key = key.lstrip("+~")
        if sep and not key.startswith(NOT_SETTINGS):
            out[key] = value
    return out


def _value(text: str | None) -> Any:
    """An override's value as data: Hydra writes a job's ``false`` back as ``False`` and
    ``3e-4`` as ``0.0003``, which are the same setting."""
    try:
        value = yaml.safe_load(text) if text is not None else None
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def swept_keys(run_folder: Path) -> tuple[tuple[str, ...], str | None]:
    """(the override keys this sweep job varies, the sweep folder) or ((), None) for a single run."""
    sweep = read_yaml_or_none(run_folder.parent / "multirun.yaml")
    if not isinstance(sweep, dict):
        return (), None
    given = _overrides((sweep.get("hydra") or {}).get("overrides", {}).get("task"))
    job = _overrides(read_yaml_or_none(run_folder / ".hydra" / "overrides.yaml"))
    swept = tuple(k for k, v in job.items() if k not in given or _value(given[k]) != _value(v))
    return swept, str(run_folder.parent)


def flat_keys(keys: tuple[str, ...], flat: dict[str, Any]) -> tuple[str, ...]:
    """Override keys as config keys: a group choice ``model`` is the config's ``model.name``."""
    out = []
    for key in keys:
        if key not in flat and f"{key}.name" in flat:
            key = f"{key}.name"
        out.append(key)
    return tuple(out)


def params_order(flat: dict[str, Any], swept: tuple[str, ...]) -> dict[str, Any]:
    """The whole flat config, swept keys first."""
    first = {k: flat[k] for k in swept if k in flat}
    return {**first, **{k: v for k, v in flat.items() if k not in first}}


def hparam_view(flat: dict[str, Any], swept: tuple[str, ...]) -> dict[str, Any]:
    """Swept keys first, then the headline keys: the columns of a sweep comparison."""
    keys = [k for k in (*swept, *HEADLINE) if k in flat]
    return {k: flat[k] for k in dict.fromkeys(keys)}
