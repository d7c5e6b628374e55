"""Every conf/<group>/*.yaml binds to its builder; every registered name has a YAML; the
composed default config parses into typed settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from athanor.config.settings import run_settings
from athanor.engine.build import REGISTRIES, validate
from conftest import CONF, compose

GROUP_FILES = [
    (group, path) for group in REGISTRIES for path in sorted((CONF / group).glob("*.yaml"))
]


def group_node(group: str, path: Path) -> dict:
    """The group's own node of a conf/<group>/*.yaml (a ``_global_`` file, as conf/task/ is,
    sets keys of other groups beside it)."""
    spec = yaml.safe_load(path.read_text())
    return spec[group] if path.read_text().startswith("# @package _global_") else spec


@pytest.mark.parametrize(("group", "path"), GROUP_FILES, ids=lambda x: getattr(x, "stem", x))
def test_every_yaml_binds_to_its_builder(group: str, path: Path):
    spec = group_node(group, path)
    assert spec["name"] in REGISTRIES[group], f"{path} names an unregistered {group}"
    REGISTRIES[group].check(spec)


@pytest.mark.parametrize("group", list(REGISTRIES))
def test_every_registered_name_has_a_yaml(group: str):
    have = {group_node(group, p)["name"] for p in (CONF / group).glob("*.yaml")}
    missing = sorted(set(REGISTRIES[group].names()) - have)
    assert not missing, f"registered {group} names without conf/{group}/<name>.yaml: {missing}"


def test_yaml_floats_are_floats():
    # plain YAML loaders read 3e-4 (no dot) as a string: the house style writes 3.0e-4
    for path in CONF.rglob("*.yaml"):
        text = path.read_text()
        for token in text.replace(",", " ").replace("[", " ").replace("]", " ").split():
            if "e-" in token and token[0].isdigit():
                assert "." in token.split("e")[0], f"{path}: write {token} as d.de-N"


def test_default_config_composes_validates_and_parses():
    config = compose()
    validate(config)
    settings = run_settings(config)
    assert config["model"]["name"] == "mlp" and config["data"]["name"] == "digits"
    assert settings.trainer.epochs >= 1 and settings.seed == 0 and settings.resume is None


@pytest.mark.parametrize("debug", ["fast", "overfit"])
def test_debug_presets_compose(debug: str):
    validate(compose(f"debug={debug}"))
