"""Where configs come from: athanor's own conf/ (in the wheel as the ``athanor.conf`` package, or
the repository's top-level conf/ in a clone) and the current folder's conf/, searched first.

athanor's own conf/ is Hydra's primary folder; a Hydra search-path plugin
(``hydra_plugins.athanor_project``, shipped in the wheel) puts the project's conf/ and the
``--config-dir`` folder (or ``config_dir=`` of the Python API) before it: their files add
options to any group and win on a name clash (said once in the log). The plugin acts only when
the primary folder is athanor's own, so other Hydra apps are left alone.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("athanor")

SOURCE_CONF = Path(__file__).resolve().parents[3] / "conf"  # a clone: conf/ beside src/
PACKAGE_CONF = Path(__file__).resolve().parents[1] / "conf"  # a wheel: the athanor.conf package


def athanor_conf() -> Path:
    """athanor's own conf/: $ATHANOR_CONF, else the clone's top-level conf/, else the package's."""
    if "ATHANOR_CONF" in os.environ:
        return Path(os.environ["ATHANOR_CONF"])
    return SOURCE_CONF if (SOURCE_CONF / "train.yaml").is_file() else PACKAGE_CONF


def project_conf(cwd: Path | None = None) -> Path | None:
    """The current folder's conf/, unless it is athanor's own (working in a clone)."""
    folder = (cwd or Path.cwd()) / "conf"
    if not folder.is_dir() or folder.resolve() == athanor_conf().resolve():
        return None
    return folder.resolve()


def config_dir_arg(argv: list[str]) -> Path | None:
    """Hydra's ``--config-dir DIR`` / ``-cd DIR`` / ``--config-dir=DIR``, when given."""
    for i, arg in enumerate(argv):
        for flag in ("--config-dir", "-cd"):
            if arg == flag and i + 1 < len(argv):
                return Path(argv[i + 1]).resolve()
            if arg.startswith(flag + "="):
                return Path(arg.split("=", 1)[1]).resolve()
    return None


# config_dir= of athanor.compose / athanor.fit, while they compose
api_config_dir: list[Path] = []


def search_dirs(argv: list[str] | None = None) -> list[Path]:
    """Config folders in search order: the project's, ``--config-dir``'s, athanor's own."""
    extra = api_config_dir[-1] if api_config_dir else config_dir_arg(argv or sys.argv[1:])
    dirs = [project_conf(), extra, athanor_conf()]
    return [d for d in dict.fromkeys(dirs) if d is not None]


def origins(group: str, dirs: list[Path]) -> dict[str, Path]:
    """option name -> the folder whose conf/<group>/<name>.yaml is used (the first found)."""
    found: dict[str, Path] = {}
    for folder in dirs:
        for path in sorted((folder / group).glob("*.yaml")):
            found.setdefault(path.stem, folder)
    return found


def clashes(dirs: list[Path]) -> list[str]:
    """Files of the project's folder(s) that hide a file of athanor's own conf/ of that name."""
    own, notes = dirs[-1], []
    for folder in dirs[:-1]:
        for path in sorted(folder.rglob("*.yaml")):
            rel = path.relative_to(folder)
            if (own / rel).is_file():
                notes.append(f"{folder / rel} is used instead of athanor's own {rel}")
    return notes


def label(folder: Path) -> str:
    """How `athanor list` names a config folder."""
    return "athanor" if folder == athanor_conf() else str(folder)


def prepend_project_dirs(search_path: Any) -> None:
    """Called by the Hydra search-path plugin: the project's folders before athanor's own."""
    from hydra.core.config_search_path import SearchPathQuery

    own = f"file://{athanor_conf()}"
    if not any(
        e.provider == "main" and e.path in (own, str(athanor_conf()))
        for e in search_path.get_path()
    ):
        return  # another Hydra app, or a test composing another folder
    for folder in search_dirs()[:-1]:
        search_path.prepend("athanor-project", f"file://{folder}", SearchPathQuery(provider="main"))


def with_clash_notes(task: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The task, saying once in the run's log which of athanor's files the project's replace."""
    notes = clashes(search_dirs())
    if not notes:
        return task

    def task_with_notes(cfg: Any) -> Any:
        for note in notes:
            log.info("project conf: %s", note)
        return task(cfg)

    task_with_notes.__name__ = getattr(task, "__name__", "task")
    task_with_notes.__module__ = getattr(task, "__module__", __name__)
    return task_with_notes
