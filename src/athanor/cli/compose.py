"""Composing the config with Hydra: where conf/ is, the group-choice check that runs before Hydra,
and the conversion of Hydra's DictConfig into plain containers (done once, here)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@contextlib.contextmanager
def compose_once() -> Iterator[None]:
    """Hydra 1.3's main composes a plain run twice: ``get_mode`` composes (for multirun, without
    sweep checks) only to read ``hydra.mode``, then ``run`` composes again, ~0.2 s before the
    first step. Here ``get_mode`` composes the way ``run`` will (RUN mode, with what ``run``'s
    caller adds: ``hydra.mode=RUN``) and ``run`` takes that config. Whatever does not fit a
    plain run (a sweep override, a config with ``hydra.mode: MULTIRUN``, an error) takes
    Hydra's own path unchanged."""
    from hydra._internal.hydra import Hydra
    from hydra.types import RunMode
    from omegaconf import open_dict, read_write

    get_mode, compose_config = Hydra.get_mode, Hydra.compose_config
    kept: dict[tuple, Any] = {}

    def get_mode_once(self, config_name, overrides):
        try:
            cfg = compose_config(self, config_name, overrides, run_mode=RunMode.RUN)
        except Exception:  # e.g. a sweep override: Hydra's own composition decides
            return get_mode(self, config_name, overrides)
        mode = cfg.hydra.mode
        if mode == RunMode.MULTIRUN:
            return mode
        run_overrides = list(overrides)
        if mode is None:  # what _run_app adds before calling run()
            run_overrides.append("hydra.mode=RUN")
            with read_write(cfg), open_dict(cfg):
                cfg.hydra.mode = RunMode.RUN
                cfg.hydra.overrides.hydra.append("hydra.mode=RUN")
        kept[(config_name, tuple(run_overrides))] = cfg
        return mode

    def compose_kept(self, config_name, overrides, run_mode, with_log_configuration=False, **kw):
        cfg = kept.pop((config_name, tuple(overrides)), None) if run_mode == RunMode.RUN else None
        if cfg is None:
            return compose_config(
                self, config_name, overrides, run_mode, with_log_configuration, **kw
            )
        if with_log_configuration:  # the part of compose_config that follows the loading
            import hydra._internal.hydra as hydra_module
            from hydra.core.utils import configure_log

            configure_log(cfg.hydra.hydra_logging, cfg.hydra.verbose)
            hydra_module.log = logging.getLogger(hydra_module.__name__)
            self._print_debug_info(config_name, overrides, run_mode)
        return cfg

    Hydra.get_mode, Hydra.compose_config = get_mode_once, compose_kept
    try:
        yield
    finally:
        Hydra.get_mode, Hydra.compose_config = get_mode, compose_config


def run_hydra_app(task, config_name: str) -> None:
    import hydra

    problem = check_group_choices(sys.argv[1:])
    if problem:
        report("Config error", problem)
        sys.exit(EXIT_USER_ERROR)
    register_resolvers()
    main = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(task)
    if any(arg.startswith("-") for arg in sys.argv[1:]):
        main()  # -m sweeps, --cfg, --info, help pages, -cn/-cp: Hydra's own path
        return
    with compose_once():
        main()
