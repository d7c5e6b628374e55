"""The Hydra side of a resume: which overrides the running app was given, and today's defaults
composed without them. Everything else (finding the checkpoint, the config the resume runs
with, what it may change) is record/resume.py's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from athanor.record import resume
from athanor.record.folder import RunDir


def _composed_without_overrides() -> dict[str, Any]:
    """conf/train.yaml as it composes with no command line (inside the running Hydra app)."""
    from hydra import compose

    from athanor.cli.compose import to_plain

    return to_plain(compose(config_name="train", overrides=[]))


def _app_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task)


def resumed_config(
    config: dict[str, Any],
    run_dir: Path,
    overrides: list[str] | None = None,
    composed_without_overrides: Callable[[], dict[str, Any]] = _composed_without_overrides,
) -> dict[str, Any]:
    """``config`` as a resume runs it (record/resume.py ``plan``); ``overrides``: by default
    the running Hydra app's command line."""
    if not config.get("resume"):
        return config
    overrides = _app_overrides() if overrides is None else overrides
    checkpoints = RunDir(run_dir).checkpoints
    return resume.plan(config, checkpoints, overrides, composed_without_overrides)[0]


def refuse_unresumable_changes(config: dict[str, Any], run_dir: Path, overrides: list[str]) -> None:
    """Raise ConfigError for a resume that must not start (record/resume.py ``check``), before
    anything is written; the run itself checks the same again when it loads."""
    checkpoints = RunDir(run_dir).checkpoints
    resumed, found = resume.plan(config, checkpoints, overrides, _composed_without_overrides)
    if found is not None:
        resume.check(found[0], found[1], resumed)
