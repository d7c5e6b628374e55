"""The config of a resumed run: `train resume=<folder | .pt | auto>` continues with that run's
own saved config (the checkpoint's), and only what the command line sets differs from it (the
keys it names, and what its group options change). Whether those changes are allowed is the
resume's business (record/resume.py: RESUMABLE_KEYS)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from athanor.record import resume
from athanor.record.folder import RunDir


def typed_paths(overrides: list[str], config: dict[str, Any]) -> tuple[list[str], bool]:
    """The config paths the overrides name (``a.b=1``, ``+a.b=1``, ``~a.b``, ``model=x``), and
    whether one of them picks a group option (whose effect only a composition shows)."""
    paths, groups = [], False
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0].split("@", 1)[0].strip()
        if not key or key.split(".")[0] == "hydra":
            continue
        if "." in key:
            paths.append(key)
            continue
        if key in config:  # a top-level key, or a group whose package is its own name
            paths.append(key)
        # a group option (model=…, experiment=…, debug=…) may set keys beyond its own node
        groups = groups or key not in config or isinstance(config[key], dict)
    return paths, groups


def _composed_without_overrides() -> dict[str, Any]:
    """conf/train.yaml as it composes with no command line (inside the running Hydra app)."""
    from hydra import compose

    from athanor.cli.compose import to_plain

    return to_plain(compose(config_name="train", overrides=[]))


def resumed_config(
    config: dict[str, Any],
    run_dir: Path,
    overrides: list[str] | None = None,
    composed_without_overrides: Callable[[], dict[str, Any]] = _composed_without_overrides,
) -> dict[str, Any]:
    """``config`` (composed from today's defaults and the ``overrides``: by default the running
    Hydra app's command line) as a resume runs it: the resumed checkpoint's config plus the
    command line's changes; ``config`` itself when it resumes nothing (no resume=, or
    resume=auto in a folder without checkpoints)."""
    return _resume(config, run_dir, overrides, composed_without_overrides)[0]


def refuse_unresumable_changes(config: dict[str, Any], run_dir: Path, overrides: list[str]) -> None:
    """Raise ConfigError naming the changes a resume may not take (record/resume.py), before
    anything is written; the run itself compares the same configs again when it loads."""
    resumed, found = _resume(config, run_dir, overrides, _composed_without_overrides)
    if found is not None:
        resume.config_changes(found[0]["config"], resumed, found[1])


def _resume(
    config: dict[str, Any],
    run_dir: Path,
    overrides: list[str] | None,
    composed_without_overrides: Callable[[], dict[str, Any]],
) -> tuple[dict[str, Any], tuple[dict[str, Any], Path] | None]:
    """(the config the resume runs with, the checkpoint found and its path, or None)."""
    if not config.get("resume"):
        return config, None
    if overrides is None:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
    found = resume.find(config["resume"], RunDir(run_dir).checkpoints, mmap=True)
    if found is None:
        return config, None
    paths, groups = typed_paths(overrides, config)
    if groups:  # e.g. experiment=…, model=…: what they change is the difference they make
        paths += resume.touched_paths(composed_without_overrides(), config)
    return resume.resume_config(found[0]["config"], config, paths), found
