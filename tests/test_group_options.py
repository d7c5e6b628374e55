"""The group-wide keys: declared once (config/groups.py), merged under every group by the CLI,
so group files hold only what differs, and every key is settable whatever file is chosen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from athanor.cli.outcome import run_task
from athanor.config.groups import COMPONENT_GROUPS
from athanor.errors import ERROR_KINDS, EXIT_INTERRUPTED
from athanor.launch.workers import _outcome, _root_cause
from conftest import CONF, FAST, compose

GROUP_FILES = [(g, p) for g in COMPONENT_GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "path"), GROUP_FILES, ids=lambda x: getattr(x, "stem", x))
def test_a_group_file_does_not_repeat_a_group_wide_default(group: str, path: Path):
    defaults = COMPONENT_GROUPS[group].defaults()
    spec = yaml.safe_load(path.read_text())
    repeated = [
        k for k, v in spec.items() if k in defaults and v == _plain(defaults[k]) and k != "name"
    ]
    assert not repeated, f"{path} repeats the group-wide defaults of {repeated}"


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


# one group-wide key a group, a non-default value for it, and how the config holds it
SETTABLE = {
    "model": ("init", "kaiming", "kaiming"),
    "data": ("batch_size", "3", 3),
    "optim": ("no_decay", "[bias]", ["bias"]),
    "scheduler": ("warmup_steps", "2", 2),
    "augment": ("mix_prob", "0.5", 0.5),
    "loss": ("flooding", "0.5", 0.5),
    "task": ("metrics", "[acc]", ["acc"]),
}


def test_settable_covers_every_group():
    assert set(SETTABLE) == set(COMPONENT_GROUPS)


@pytest.mark.parametrize(("group", "path"), GROUP_FILES, ids=lambda x: getattr(x, "stem", x))
def test_every_group_wide_key_is_composed_and_settable_for_every_file(group: str, path: Path):
    config = compose(f"{group}={path.stem}")
    assert set(COMPONENT_GROUPS[group].keys()) <= set(config[group])
    key, override, value = SETTABLE[group]
    assert config[group][key] != value
    # set from the command line under Hydra's struct mode, though no group file lists it
    assert compose(f"{group}={path.stem}", f"{group}.{key}={override}")[group][key] == value


def test_a_group_file_overrides_the_group_wide_default():
    assert compose("data=cifar10")["data"]["batch_size"] == 128
    assert compose("data=digits")["data"]["batch_size"] == COMPONENT_GROUPS["data"]().batch_size


def test_cfg_job_shows_every_group_wide_key(train):
    shown = yaml.safe_load(train("--cfg", "job").stdout)
    for group, options in COMPONENT_GROUPS.items():
        assert set(options.keys()) <= set(shown[group]), group


def test_a_warmup_longer_than_a_capped_run_is_shortened_with_one_warning(train):
    result = train(*FAST, "debug=fast", "scheduler.warmup_epochs=1")
    lines = [line for line in result.output.splitlines() if "warming up over" in line]
    assert len(lines) == 1 and "scheduler.warmup_epochs=1" in lines[0], result.output
    assert "0 step(s)" in lines[0]  # a one-step run keeps its one step for the schedule


ROOT_CAUSES = sorted(k for k in ERROR_KINDS if k != "PeerFailed")  # PeerFailed: never the cause


@pytest.mark.parametrize("kind", ROOT_CAUSES)
def test_train_and_the_ddp_launcher_end_every_error_kind_alike(kind, tmp_path, monkeypatch):
    """One table: a worker's error comes home as the same kind, text and exit code as run_task
    gives it in a one-process run."""
    error = ERROR_KINDS[kind].error("the reason")
    outcome, worker_code = _outcome(error, rank=1)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "outcome-1.json").write_text(json.dumps(outcome))
    raised = _root_cause(scratch, None, tmp_path / "run")
    assert type(raised) is type(error) and str(raised) == "the reason"

    def fail(config, run_dir):
        raise raised

    monkeypatch.setattr("athanor.cli.outcome.is_multirun", lambda: False)
    with pytest.raises(SystemExit) as ended:
        run_task(fail, {}, tmp_path / "run")
    assert ended.value.code == worker_code == ERROR_KINDS[kind].exit_code
    assert (worker_code == EXIT_INTERRUPTED) == (kind == "InterruptedRun")
