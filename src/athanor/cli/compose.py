"""Composing the config with Hydra: where conf/ is, the group-choice check that runs before Hydra,
and the conversion of Hydra's DictConfig into plain containers (done once, here)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from athanor.cli.outcome import report
from athanor.cli.project import athanor_conf, search_dirs, with_clash_notes
from athanor.cli.resolvers import register_resolvers
from athanor.errors import EXIT_USER_ERROR

CONF_DIR = athanor_conf()


def to_plain(cfg) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


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
    task = with_clash_notes(
        task
    )  # a project's conf/ is searched first (hydra_plugins/athanor_project)
    main = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(task)
    main()
