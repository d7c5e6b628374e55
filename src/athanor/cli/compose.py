"""Composing the config with Hydra: where conf/ is, the group-choice check that runs before Hydra,
and the conversion of Hydra's DictConfig into plain containers (done once, here)."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from athanor.cli.group_defaults import register_group_defaults
from athanor.cli.hydra_errors import run_hydra
from athanor.cli.outcome import report
from athanor.cli.project import athanor_conf, search_dirs, with_clash_notes
from athanor.cli.resolvers import register_resolvers
from athanor.errors import EXIT_USER_ERROR

CONF_DIR = athanor_conf()


def to_plain(cfg) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def job_config(cfg) -> dict[str, Any]:
    """The composed config as the job sees it: plain data, resolved, without the ``hydra`` node
    (usable before Hydra's job starts, when ``${hydra:}`` could not resolve yet)."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    return OmegaConf.to_container(OmegaConf.create(plain), resolve=True)


def output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


SWEEP_FUNCTIONS = ("glob", "range", "choice", "interval", "tag", "sort", "shuffle")


def _split_sweep(value: str) -> list[str]:
    """The elements of a sweep list: commas split, except inside quotes or parentheses."""
    parts, depth, quote, current = [], 0, "", ""
    for ch in value:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    return [*parts, current]


def _choices(value: str) -> list[str]:
    """The plain option names a group override asks for; Hydra's sweep functions (glob, range,
    interval, tag, sort, ...) are left to Hydra, except choice(...) whose names are plain."""
    names = []
    for part in (p.strip() for p in _split_sweep(value)):
        head = part.split("(", 1)[0].strip()
        if part.endswith(")") and head in SWEEP_FUNCTIONS:
            if head == "choice":
                names += _choices(part[len(head) + 1 : -1])
            continue
        if len(part) >= 2 and part[0] == part[-1] and part[0] in "'\"":
            part = part[1:-1]
        names.append(part)
    return names


def _registered_by_hydra(group: str) -> list[str]:
    """The options of a ``hydra/`` group that Hydra's own plugins register without a file
    (``hydra/launcher=basic``); looked up only when a choice names no file (it imports them)."""
    if not group.startswith("hydra/"):
        return []
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()  # the plugins register their configs as they are imported
    try:
        return [Path(name).stem for name in ConfigStore.instance().list(group)]
    except OSError:  # no such group
        return []


def check_group_choices(argv: list[str], conf_dir: Path | None = None) -> str | None:
    """A message for ``group=option`` overrides naming no file of ``conf/<group>/``, or None.

    Hydra reports these too, but without suggesting the closest option; a sweep's
    comma-separated choices are each checked, Hydra's sweep syntax (glob(*), choice(...), quoted
    values) is accepted. Every searched folder's options count (the
    project's conf/, --config-dir, athanor's own)."""
    from athanor.registry import closest

    dirs = [conf_dir] if conf_dir else search_dirs(argv)
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        folders = [d / key for d in dirs if key and (d / key).is_dir()]
        if not sep or "." in key or not key or not folders or value in ("", "null"):
            continue
        options = sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})
        for choice in _choices(value):
            if choice not in options and choice != "null":
                options = sorted({*options, *_registered_by_hydra(key)})
            if choice not in options and choice != "null":
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


def prepare_hydra() -> None:
    """What Hydra needs before it composes athanor's config: the run-folder resolvers and each
    group's defaults (config/groups.py) in its ConfigStore."""
    register_resolvers()
    register_group_defaults()


def run_hydra_app(task, config_name: str) -> None:
    import hydra

    problem = check_group_choices(sys.argv[1:])
    if problem:
        report("Config error", problem)
        sys.exit(EXIT_USER_ERROR)
    prepare_hydra()
    # a project's conf/ is searched first (hydra_plugins/athanor_project); a clash is said once
    task = with_clash_notes(task)
    main = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(task)
    if any(arg.startswith("-") for arg in sys.argv[1:]):
        run_hydra(main)  # -m sweeps, --cfg, --info, help pages, -cn/-cp: Hydra's own path
        return
    with compose_once():
        run_hydra(main)
