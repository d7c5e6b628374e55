"""`athanor init NAME`: write a small project that trains as it stands (a registered model and
data set, their YAMLs, a default experiment, a README and a smoke test), from the templates in
``athanor/cli/templates/project`` (package data: ``PACKAGE`` becomes the package's name, each
``.tmpl`` file is written without that suffix, ``{{name}}``/``{{package}}`` are filled in)."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from athanor.errors import ConfigError

TEMPLATE = Path(__file__).resolve().parent / "templates" / "project"


def package_name(name: str) -> str:
    """`my-project` -> `my_project`; refuses a name that cannot become a Python package."""
    package = re.sub(r"[-. ]+", "_", Path(name).name).lower()
    if not package[:1].isalpha() or not package.isidentifier() or keyword.iskeyword(package):
        raise ConfigError(
            f"athanor init: {name!r} cannot name a Python package (it becomes {package!r}); use "
            "letters, digits, '-' or '_', starting with a letter, e.g. athanor init my-project."
        )
    return package


def init_project(name: str) -> list[Path]:
    """Write the project into the folder ``name`` (new or empty); returns the files written."""
    target = Path(name)
    if ".." in target.parts and target.resolve().exists():
        raise ConfigError(
            f"athanor init: {name!r} goes through '..' to the existing folder "
            f"{str(target.resolve())!r}; give the new project's own folder name, e.g. athanor "
            "init my-project (init writes only into a new or empty folder)."
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(
            f"athanor init: {str(target.resolve())!r} already exists and is not empty; give a new "
            "folder name (init never writes over files)."
        )
    package = package_name(name)
    values = {"{{name}}": target.resolve().name, "{{package}}": package}
    written = []
    for source in sorted(p for p in TEMPLATE.rglob("*") if p.is_file()):
        rel = source.relative_to(TEMPLATE).as_posix().replace("PACKAGE", package)
        dest = target / rel.removesuffix(".tmpl")
        text = source.read_text()
        for key, value in values.items():
            text = text.replace(key, value)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
        written.append(dest)
    return written
