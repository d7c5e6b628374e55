"""Composing the config with Hydra: where conf/ is, the group-choice check that runs before Hydra,
and the conversion of Hydra's DictConfig into plain containers (done once, here)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from athanor.cli.group_defaults import register_group_defaults
from athanor.cli.hydra_errors import run_hydra
from athanor.cli.outcome import report
from athanor.cli.resolvers import register_resolvers
from athanor.errors import EXIT_USER_ERROR

CONF_DIR = Path(os.environ.get("ATHANOR_CONF", Path(__file__).resolve().parents[3] / "conf"))


def to_plain(cfg) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def check_group_choices(argv: list[str], conf_dir: Path = CONF_DIR) -> str | None:
    """A message for ``group=option`` overrides naming no file of ``conf/<group>/``, or None.

    Hydra reports these too, but without suggesting the closest option; a sweep's
    comma-separated choices are each checked."""
    from athanor.registry import closest

    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        folder = conf_dir / key
        if not sep or "." in key or not key or not folder.is_dir() or value in ("", "null"):
            continue
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        for choice in value.split(","):
            if choice not in options:
                return (
                    f"{key}={choice!r} names no file conf/{key}/{choice}.yaml.{closest(choice, options)} "
                    f"Valid {key} options: {', '.join(options)}."
                )
    return None


def run_hydra_app(task, config_name: str) -> None:
    import hydra

    problem = check_group_choices(sys.argv[1:])
    if problem:
        report("Config error", problem)
        sys.exit(EXIT_USER_ERROR)
    register_resolvers()
    register_group_defaults()
    main = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(task)
    run_hydra(main)
