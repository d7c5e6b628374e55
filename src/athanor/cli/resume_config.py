"""The config of a resumed run: `train resume=<folder | .pt | auto>` continues with that run's
own saved config (the checkpoint's), and only what the command line sets differs from it (the
keys it names, and what its group options change). Whether those changes are allowed is the
resume's business (record/resume.py: RESUMABLE_KEYS)."""

from __future__ import annotations

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
        groups = groups or key not in resume.IGNORED_KEYS
        if key in config:  # a group whose package is its own name, or a top-level key
            paths.append(key)
    return paths, groups


def _composed_without_overrides() -> dict[str, Any]:
    """conf/train.yaml as it composes with no command line (inside the running Hydra app)."""
    from hydra import compose

    from athanor.cli.compose import to_plain

    return to_plain(compose(config_name="train", overrides=[]))


def resumed_config(config: dict[str, Any], run_dir) -> dict[str, Any]:
    """``config`` (composed from today's defaults and the command line) as a resume runs it: the
    resumed checkpoint's config plus the command line's changes; ``config`` itself when it
    resumes nothing (no resume=, or resume=auto in a folder without checkpoints)."""
    from hydra.core.hydra_config import HydraConfig

    if not config.get("resume") or not HydraConfig.initialized():
        return config
    found = resume.find(config["resume"], RunDir(run_dir).checkpoints, mmap=True)
    if found is None:
        return config
    overrides = list(HydraConfig.get().overrides.task)
    paths, groups = typed_paths(overrides, config)
    if groups:  # e.g. experiment=…, model=…: what they change is the difference they make
        paths += resume.touched_paths(_composed_without_overrides(), config)
    return resume.resume_config(found[0]["config"], config, paths)
