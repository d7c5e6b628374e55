"""End to end through the real `train` CLI: the run folder, TensorBoard, accuracy, seeding."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import FAST, ROOT, cli


def read_scalars(tb_dir) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default experiment (`train`, digits) with a few epochs, run once for this module."""
    cwd = tmp_path_factory.mktemp("default")
    return cli("athanor.train", "trainer.epochs=6", "logger.progress=plain", cwd=cwd)


def test_run_folder_has_every_file(default_run):
    run = default_run.run_dir
    assert run.parent.parent.name == "outputs"
    assert run.name.endswith("_mlp_digits")
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        assert (run / ".hydra" / name).is_file()
    assert (run / "train.log").read_text().count("epoch 6/6 done") == 1
    assert list((run / "tb").glob("events.out.tfevents.*"))
    for name in ("last.pt", "best.pt"):
        assert (run / "checkpoints" / name).is_file()
    summary = default_run.summary()
    assert summary["status"] == "completed" and summary["error"] is None
    assert summary["epochs"] == 6 and summary["steps"] > 0 and summary["wall_time_s"] > 0
    assert summary["params"]["total"] > 0
    assert summary["versions"]["torch"] == torch.__version__.split("+")[0]
    assert set(summary["git"]) == {"commit", "dirty"}
    # the test runs `python -m athanor.train`: the command line records the module and overrides
    assert "trainer.epochs=6" in summary["command"]
    assert summary["final"]["val/acc"] == default_run.metrics()[-1]["val/acc"]
    assert summary["best"]["val/acc"] == max(m["val/acc"] for m in default_run.metrics())


def test_validation_accuracy_on_digits_rises_above_90_percent(default_run):
    metrics = default_run.metrics()
    assert len(metrics) == 6 and [m["epoch"] for m in metrics] == list(range(1, 7))
    assert metrics[-1]["val/acc"] > 0.90
    assert metrics[-1]["val/loss"] < metrics[0]["val/loss"]
    assert 0 <= metrics[-1]["val/acc5"] <= 1 and metrics[-1]["val/acc5"] >= metrics[-1]["val/acc"]


def test_checkpoints_are_plain_dicts_with_config(default_run):
    ckpt = torch.load(default_run.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert {"model", "optimizer", "progress"} <= set(ckpt["state"])
    progress = ckpt["state"]["progress"]
    assert progress["epoch"] == 6 and progress["step"] == default_run.summary()["steps"]
    assert ckpt["config"]["model"]["name"] == "mlp"
    best_record = ckpt["state"]["metrics_log"]["best"]  # the run's metrics log, in last.pt
    assert best_record == default_run.summary()["best"]
    best = torch.load(default_run.run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert set(best["state"]) <= {"progress", "model", "ema"}  # weights only: resume uses last.pt
    assert best_record["step"] == best["state"]["progress"]["step"]  # best.pt is that validation


def test_tensorboard_scalars_read_back(default_run):
    scalars = read_scalars(default_run.run_dir / "tb")
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "lr"):
        assert tag in scalars, f"{tag} missing from {sorted(scalars)}"
    val = [e.value for e in scalars["val/acc"]]
    assert val == pytest.approx([m["val/acc"] for m in default_run.metrics()], abs=1e-6)
    steps = [e.step for e in scalars["train/loss"]]
    assert steps == sorted(set(steps)), "train/loss steps must be unique and increasing"


def test_saved_config_matches_overrides(default_run):
    hydra_dir = default_run.run_dir / ".hydra"
    assert yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) == [
        "trainer.epochs=6",
        "logger.progress=plain",
    ]
    assert yaml.safe_load((hydra_dir / "config.yaml").read_text())["trainer"]["epochs"] == 6


def test_same_seed_same_metrics_different_seed_differs(train, tmp_path):
    args = ("trainer.epochs=2", "logger.tensorboard=false", "checkpoint.enabled=false")
    for sub in "abc":
        (tmp_path / sub).mkdir()
    first = train(*args, cwd=tmp_path / "a")
    second = train(*args, cwd=tmp_path / "b")
    strip = [{k: v for k, v in m.items() if k != "time"} for m in first.metrics()]
    again = [{k: v for k, v in m.items() if k != "time"} for m in second.metrics()]
    assert strip == again
    other = train(*args, "seed=1", cwd=tmp_path / "c")
    assert [m["val/loss"] for m in other.metrics()] != [m["val/loss"] for m in first.metrics()]


def test_a_run_whose_folder_is_taken_gets_the_next_free_one(train, tmp_path):
    """A real collision, whatever the clock does: the folders this run could be named for the
    next two minutes already exist (as if another run had started in that second), so the run must
    write into `<name>_1`, and the folder it collided with stays as it was."""
    from datetime import datetime, timedelta

    now = datetime.now()
    taken = []
    for second in range(120):
        t = now + timedelta(seconds=second)
        folder = tmp_path / "outputs" / t.strftime("%Y-%m-%d") / f"{t.strftime('%H-%M-%S')}_same"
        folder.mkdir(parents=True)
        (folder / "other_run.txt").write_text("not yours")
        taken.append(folder)
    result = train(*FAST, "trainer.max_steps=2", "name=same")
    run = result.run_dir
    assert run.name.endswith("_same_1") and run.parent / run.name.removesuffix("_1") in taken
    assert result.summary()["status"] == "completed"
    for folder in taken:
        assert [p.name for p in folder.iterdir()] == ["other_run.txt"]


def test_cfg_job_prints_composed_config(train):
    result = train("--cfg", "job", "model=simple_cnn")
    config = yaml.safe_load(result.stdout)
    assert config["model"]["name"] == "simple_cnn" and "trainer" in config
    assert not (result.cwd / "outputs").exists() or not any(
        (result.cwd / "outputs").rglob("summary.json")
    )


@pytest.mark.parametrize(
    "args",
    [
        ("model=simple_cnn", "optim=sgd", "optim.lr=0.05"),
        ("model=resnet18", "optim=sgd", "data.batch_size=32"),
        (
            "data=fake",
            "data.num_train=64",
            "data.num_val=32",
            "data.image_size=16",
            "data.batch_size=16",
            "model=simple_cnn",
        ),
    ],
    ids=["simple_cnn", "resnet18", "fake"],
)
def test_other_components_train_end_to_end(train, args):
    result = train(*FAST, "trainer.max_steps=3", *args)
    assert result.summary()["status"] == "completed"
    assert result.summary()["steps"] == 3


@pytest.mark.parametrize(
    "script, module, args",
    [
        ("train", "athanor.train", ("--cfg", "job", "model=simple_cnn", "optim.lr=0.01")),
        ("train", "athanor.train", ("--help",)),
        ("train", "athanor.train", ("model=resnet81",)),  # a config error: same paragraph, exit 2
        ("evaluate", "athanor.evaluate", ("--help",)),
        ("evaluate", "athanor.evaluate", ("ckpt=nowhere",)),
        ("athanor", "athanor", ("list", "optim")),
        ("athanor", "athanor", ("list", "modle")),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v,
)
def test_module_entry_points_agree(tmp_path, script, module, args):
    """`python -m <module>` (what torchrun runs) and the installed command give the same
    output and exit code, for a success and for an error."""
    import shutil

    command = shutil.which(script, path=str(Path(sys.executable).parent))
    assert command, f"the {script} command is not installed next to {sys.executable}"
    by_module = cli(module, *args, cwd=tmp_path, expect=None)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    by_script = subprocess.run(
        [command, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert by_script.returncode == by_module.returncode
    assert by_script.stdout == by_module.stdout
    assert by_script.stderr.splitlines()[-3:] == by_module.stderr.splitlines()[-3:]
    assert by_module.output.strip()  # something was said


def test_athanor_list_names_every_group(athanor_cmd):
    out = athanor_cmd("list").stdout
    for group in ("model:", "data:", "optim:", "scheduler:", "augment:", "loss:"):
        assert group in out
    assert "resnet18" in athanor_cmd("list", "model").stdout
    bad = athanor_cmd("list", "modle", expect=2)
    assert "Did you mean 'model'?" in bad.stderr
