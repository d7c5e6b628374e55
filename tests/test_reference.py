"""The generated forms of the schema: REFERENCE.md (every key and registered name),
conf/<group>/default.yaml of the settings groups (with summary.json's table in the reference) are
what the typed classes and the registries give today, and `athanor help <group>` prints one
section (`athanor help guide`: the hand-written guide)."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from athanor.cli import help as help_module
from athanor.cli.help import WRITE_COMMAND, reference_text, stale_files
from athanor.config.groups import COMPONENT_GROUPS
from athanor.config.reference import SETTINGS_GROUPS, field_docs
from athanor.config.schema import parse
from athanor.engine.build import REGISTRIES
from conftest import CONF, cli


def test_every_generated_file_is_up_to_date():
    stale = stale_files()
    assert not stale, f"out of date: {[str(p) for p in stale]}; run `{WRITE_COMMAND}`"


@pytest.mark.parametrize("group", sorted(SETTINGS_GROUPS))
def test_a_generated_yaml_states_its_class_defaults(group: str):
    # what `train` composes and what library use gets are one set of values (trainer.epochs
    # once was 10 in one and 20 in the other)
    settings = SETTINGS_GROUPS[group]
    written = yaml.safe_load((CONF / group / "default.yaml").read_text())
    assert parse(settings, written, group) == settings()


def undocumented(cls: type) -> list[str]:
    """The keys of ``cls`` (and of its nested settings classes) without a comment."""
    hints, docs, missing = typing.get_type_hints(cls), field_docs(cls), []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            missing += [f"{f.name}.{key}" for key in undocumented(hints[f.name])]
        elif not docs.get(f.name):
            missing.append(f.name)
    return missing


@pytest.mark.parametrize("group", [*SETTINGS_GROUPS, *COMPONENT_GROUPS])
def test_every_key_says_what_it_means(group: str):
    # the comment is the key's documentation: the YAML, `athanor help` and the reference show it
    cls = {**SETTINGS_GROUPS, **COMPONENT_GROUPS}[group]
    assert not undocumented(cls), f"keys of {group} without a comment in {cls.__qualname__}"


def test_the_reference_names_every_registered_name_and_every_key():
    text = reference_text()
    for group, registry in REGISTRIES.items():
        for entry in registry.entries():
            if entry.origin.startswith("athanor."):
                assert f"| `{entry.name}` |" in text, (group, entry.name)
    for group, cls in {**SETTINGS_GROUPS, **COMPONENT_GROUPS}.items():
        for key in field_docs(cls):
            assert f"`{group}.{key}" in text, (group, key)


def test_write_reference_writes_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(help_module, "REFERENCE", tmp_path / "REFERENCE.md")
    assert help_module.cmd_help(None, write=True) == 0
    assert (tmp_path / "REFERENCE.md").read_text() == reference_text()


def test_athanor_help_prints_a_groups_keys_and_names(tmp_path):
    out = cli("athanor", "help", "trainer", cwd=tmp_path).stdout
    assert "| `trainer.epochs` | `20` | int | passes over the training data |" in out
    out = cli("athanor", "help", "optim", cwd=tmp_path).stdout
    assert "| `sgd` | `lr=0.1`" in out and "`optim.no_decay`" in out
    result = cli("athanor", "help", "optimm", cwd=tmp_path, expect=2)
    assert "Did you mean 'optim'?" in " ".join(result.stdout.split())
