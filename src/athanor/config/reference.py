"""The settings' other forms, generated from the typed classes, where each default, type, range
and meaning is written once (a default in the field, its meaning in the field's comment):

- ``conf/<group>/default.yaml`` of the trainer, checkpoint, logger and distributed groups, the
  commented files ``train`` composes (``settings_yaml``; a test compares them with these classes);
- the reference tables of every group-wide key (``keys_table``), read by ``athanor help <group>``
  and REFERENCE.md.

``athanor help --write-reference`` rewrites them all.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from typing import Any

import yaml

from athanor.config.settings import (
    CheckpointSettings,
    DistributedSettings,
    LoggerSettings,
    TrainerSettings,
)
from athanor.typecheck import describe

# the groups whose conf/<group>/default.yaml is generated from a settings class
SETTINGS_GROUPS: dict[str, type] = {
    "trainer": TrainerSettings,
    "checkpoint": CheckpointSettings,
    "logger": LoggerSettings,
    "distributed": DistributedSettings,
}

_FIELD = re.compile(r"^    (\w+): [^#]*?(?:#\s*(.*))?$")  # `    name: hint = default  # doc`
_COMMENT = re.compile(r"^    #\s?(.*)$")  # a comment line above a field continues its doc
_COLUMN = 28  # where the generated YAML's comments start


def field_docs(cls: type) -> dict[str, str]:
    """{field: its comment} from the class's source: the comment at the end of the field's line,
    after the comment lines above it."""
    docs, above = {}, []
    for line in inspect.getsource(cls).splitlines():
        if comment := _COMMENT.match(line):
            above.append(comment[1])
            continue
        if field := _FIELD.match(line):
            tail = re.sub(r"type: ignore\[[\w-]+\]\s*#?\s*", "", field[2] or "").strip()
            docs[field[1]] = " ".join([*above, tail]).strip()
        above = []
    return docs


def _yaml_value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1000)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def settings_yaml(cls: type, indent: str = "") -> str:
    """The commented YAML of a settings class's defaults (nested classes as nested blocks)."""
    docs, lines = field_docs(cls), []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        value = _default(f)
        if dataclasses.is_dataclass(hints[f.name]):
            lines += [f"{indent}{f.name}:", settings_yaml(hints[f.name], indent + "  ")]
            continue
        line = f"{indent}{f.name}: {_yaml_value(value)}"
        if docs.get(f.name):
            line = f"{line:<{_COLUMN - 1}} # {docs[f.name]}"
        lines.append(line)
    return "\n".join(lines)


def keys_table(cls: type, prefix: str) -> str:
    """A Markdown table of the class's keys (``prefix.key``): default, type and range, meaning."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls, include_extras=True)
    rows = ["| key | default | type and range | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            rows += keys_table(hint, f"{prefix}.{f.name}").splitlines()[2:]
            continue
        default = _yaml_value(_default(f))
        cells = [f"`{prefix}.{f.name}`", f"`{default}`", describe(hint), docs.get(f.name, "")]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)


def _default(f: dataclasses.Field) -> Any:
    """The field's default as written (``__post_init__`` may normalize the instance's)."""
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default
    return list(value) if isinstance(value, tuple) else value
