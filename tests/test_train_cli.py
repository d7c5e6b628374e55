"""End to end through the real `train` CLI: the run folder, TensorBoard, accuracy, seeding."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from conftest import FAST


def read_scalars(tb_dir) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default experiment (`train`, digits) with a few epochs, run once for this module."""
    from conftest import cli

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
    best = torch.load(default_run.run_dir / "checkpoints" / "best.pt", weights_only=True)
    best_record = best["state"]["metrics_log"]["best"]
    assert best_record == default_run.summary()["best"]
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


def test_two_runs_in_the_same_second_get_distinct_folders(tmp_path):
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "athanor.train",
        *FAST,
        "trainer.max_steps=2",
        "hydra.run.dir=outputs/same",
    ]
    # a fixed run dir models Hydra's same-second collision: athanor must still not share it
    cmd[-1] = "name=same"
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stdout.read().decode()[-2000:]
    folders = sorted(p.parent for p in (tmp_path / "outputs").rglob("summary.json"))
    assert len(folders) == 2 and len(set(folders)) == 2
    for folder in folders:
        assert json.loads((folder / "summary.json").read_text())["status"] == "completed"


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


def test_module_entry_points_agree(athanor_cmd):
    out = athanor_cmd("list").stdout
    for group in ("model:", "data:", "optim:", "scheduler:", "augment:", "loss:"):
        assert group in out
    assert "resnet18" in athanor_cmd("list", "model").stdout
    bad = athanor_cmd("list", "modle", expect=2)
    assert "Did you mean 'model'?" in bad.stderr
