"""`train --help`, `evaluate --help` and `athanor --help` print athanor's own pages (examples and
the config groups as they are in conf/), while Hydra's `--hydra-help` and `--cfg job` still work."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import CONF, cli


def groups_on_disk() -> dict[str, list[str]]:
    """Each group of conf/train.yaml's defaults list and the option files of its folder."""
    defaults = yaml.safe_load((CONF / "train.yaml").read_text())["defaults"]
    keys = [next(iter(d)) for d in defaults if isinstance(d, dict)]
    # `group_defaults@model` merges the group-wide keys (not a choice); `optional experiment`;
    # `override hydra/launcher` (Hydra's group, athanor's default)
    names = [k.split(" ")[-1] for k in keys if "@" not in k]
    return {g: sorted(p.stem for p in (CONF / g).glob("*.yaml")) for g in names}


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_train_help_is_athanors_with_examples_and_every_group(tmp_path, flag):
    result = cli("athanor.train", flag, cwd=tmp_path)
    out = result.stdout
    assert out.startswith("train [group=option ...]") and "Hydra" not in out.splitlines()[0]
    assert "Examples:" in out and "train debug=fast" in out and "train --hydra-help" in out
    groups = groups_on_disk()
    assert len(groups) >= 10
    for group, options in groups.items():
        assert f"\n  {group} " in out, group
        if len(options) > 1:  # the page lists every option file of the group
            section = re.split(r"\n  \S", out.split(f"\n  {group} ", 1)[1], maxsplit=1)[0]
            assert all(o in section for o in options), (group, section)
    assert not (tmp_path / "outputs").exists()  # help starts no run


def test_help_wins_over_other_arguments_and_a_bad_group(tmp_path):
    """`train model=resnet81 --help` shows the page instead of the config error."""
    assert cli("athanor.train", "model=resnet81", "--help", cwd=tmp_path).stdout.startswith(
        "train ["
    )


def test_evaluate_help_lists_its_keys_and_examples(tmp_path):
    out = cli("athanor.evaluate", "--help", cwd=tmp_path).stdout
    base = yaml.safe_load((CONF / "evaluate.yaml").read_text())
    for key in base:
        assert f"\n  {key}" in out, key  # data.* for data
    assert "Examples:" in out and "evaluate ckpt=" in out


def test_athanor_help_has_its_commands_examples_and_the_groups(tmp_path):
    out = cli("athanor", "--help", cwd=tmp_path).stdout
    assert out.startswith("usage: athanor")
    for text in ("list", "export", "report", "examples:", "athanor list model", "\n  scheduler "):
        assert text in out, text


def test_hydras_own_help_and_cfg_job_still_work(tmp_path):
    assert "== Flags ==" in cli("athanor.train", "--hydra-help", cwd=tmp_path).stdout
    config = yaml.safe_load(cli("athanor.train", "--cfg", "job", cwd=tmp_path).stdout)
    assert config["model"]["name"] == "mlp"
