"""Checkpoint contents, atomic saves, failed saves (stop | warn), damaged files, disk checks."""

from __future__ import annotations

import errno
import logging
import threading

import pytest
import torch

from athanor.config.settings import CheckpointSettings
from athanor.errors import ConfigError
from athanor.record import checkpoints as checkpoint
from athanor.record.checkpoints import Checkpointer, CheckpointSaveError, check_disk, load_latest
from athanor.record.folder import RunDir
from conftest import cli, compose

TINY = (
    "data=fake",
    "data.num_train=128",
    "data.num_val=32",
    "data.batch_size=16",
    "model=mlp",
    "model.hidden=[8]",
    "trainer.log_every=1",
    "logger.progress=plain",
    "logger.image_grid=false",
    "logger.plots=false",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("ckpt")
    cli(
        "athanor.train",
        *TINY,
        "trainer.epochs=2",
        "trainer.ema.decay=0.9",
        "checkpoint.every_steps=3",
        "checkpoint.keep_steps=3",
        "hydra.run.dir=run",
        cwd=cwd,
    )
    return cwd / "run"


def _position(ckpt: dict) -> tuple[int, int, int]:
    p = ckpt["state"]["progress"]
    return p["epoch"], p["step"], p["batch"]


def test_checkpoint_is_a_plain_dict_loadable_with_weights_only(run):
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert set(ckpt) == {"format_version", "config", "data", "state"}
    assert ckpt["format_version"] == checkpoint.FORMAT_VERSION == 2
    # what evaluate/export need of the data: the input spec and the normalization used
    assert ckpt["data"]["inputs"] == "uint8 3x32x32" and ckpt["data"]["outputs"] == 10  # fake
    assert len(ckpt["data"]["mean"]) == len(ckpt["data"]["std"]) == 3
    state = ckpt["state"]
    # every part once, in restore order (progress first, RNG last); no epoch/step beside them
    assert list(state) == [
        "progress",
        "model",
        "optimizer",
        "schedule",
        "grad_scaler",
        "skipped_steps",
        "ema",
        "metrics_log",
        "rng",
    ]
    assert _position(ckpt) == (2, 16, 0)
    summary = RunDir(run).read_summary()
    assert state["metrics_log"]["best"] == summary["best"]
    assert state["metrics_log"]["monitor"]["best"] == summary["best"]["val/acc"]
    assert {"python", "numpy", "torch"} <= set(state["rng"])
    assert ckpt["config"]["model"]["hidden"] == [8] and isinstance(ckpt["config"], dict)
    assert state["schedule"]["plan"] == {"steps_per_epoch": 8, "total_steps": 16}
    assert state["grad_scaler"] == {}  # precision 32: the (disabled) GradScaler's own state
    assert state["skipped_steps"] == {"count": 0}
    assert torch.equal(state["ema"]["n_averaged"], torch.tensor(16))
    # mid-epoch checkpoints remember the position inside the epoch; keep_steps=3 periodic files
    steps = sorted(int(p.stem[5:]) for p in (run / "checkpoints").glob("step_*.pt"))
    assert steps == [12, 15, 16]  # every 3 steps + each epoch end (8, 16)
    mid = torch.load(run / "checkpoints" / "step_000000012.pt", weights_only=True)
    assert _position(mid) == (1, 12, 4)
    assert (run / "checkpoints" / "last.pt").samefile(run / "checkpoints" / "step_000000016.pt")


def _settings(tmp_path, **kw) -> tuple[Checkpointer, dict]:
    ckpt = Checkpointer(tmp_path, CheckpointSettings(keep_steps=2, **kw))
    state = {"state": {"model": {"w": torch.arange(4.0)}}, "config": {}}
    return ckpt, state


def _saved(state: dict, step: int) -> dict:
    return {**state, "state": {**state["state"], "progress": {"step": step}}}


def _snapshot(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("on_error", ["stop", "warn"])
def test_failed_save_keeps_earlier_checkpoints_and_stops_or_warns(
    tmp_path, monkeypatch, caplog, on_error
):
    ckpt, state = _settings(tmp_path, on_error=on_error)
    ckpt.save(_saved(state, 1), step=1)
    ckpt.save(_saved(state, 2), step=2)
    before = _snapshot(tmp_path)

    def disk_full(obj, f):
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    if on_error == "stop":
        with pytest.raises(CheckpointSaveError, match="No space left on device.*intact.*stops"):
            ckpt.save(_saved(state, 3), step=3)
    else:
        with caplog.at_level(logging.WARNING):
            assert ckpt.save(_saved(state, 3), step=3) is None
        assert "No space left" in caplog.text and "continues" in caplog.text
    assert _snapshot(tmp_path) == before  # no temp file, no half file, last.pt untouched
    assert checkpoint.saved_step(load_latest(tmp_path)[0]) == 2


def test_failed_save_stops_a_real_run_or_lets_it_continue(tmp_path, monkeypatch):
    from athanor.engine.run import train_run

    calls = []
    real = checkpoint.save_atomic

    def fail_second(state, path, **kwargs):
        if path.name.startswith("step_"):  # the periodic file, not the weights-only best.pt
            calls.append(path.name)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        real(state, path, **kwargs)

    monkeypatch.setattr(checkpoint, "save_atomic", fail_second)
    config = compose(*TINY, "trainer.epochs=3", "logger.tensorboard=false")
    with pytest.raises(CheckpointSaveError):
        train_run(config, tmp_path / "stop")
    summary = RunDir(tmp_path / "stop").read_summary()
    assert summary["status"] == "failed" and "No space left" in summary["error"]
    assert summary["epochs"] == 2  # it stopped at the failed save
    assert _position(torch.load(tmp_path / "stop/checkpoints/last.pt", weights_only=True))[0] == 1

    calls.clear()
    config["checkpoint"]["on_error"] = "warn"
    train_run(config, tmp_path / "warn")
    summary = RunDir(tmp_path / "warn").read_summary()
    assert summary["status"] == "completed" and summary["epochs"] == 3
    assert _position(torch.load(tmp_path / "warn/checkpoints/last.pt", weights_only=True))[0] == 3


def test_damaged_newest_file_falls_back_to_the_previous_one(tmp_path, caplog):
    ckpt, state = _settings(tmp_path)
    for step in (1, 2):
        ckpt.save(_saved(state, step), step=step)
    (tmp_path / "last.pt").write_bytes(b"garbage")  # hard link: step_2 is damaged too
    with caplog.at_level(logging.WARNING):
        loaded, path = load_latest(tmp_path)
    assert (checkpoint.saved_step(loaded), path.name) == (1, "step_000000001.pt")
    assert "damaged" in caplog.text
    (tmp_path / "step_000000001.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match="No checkpoint in .* can be loaded"):
        load_latest(tmp_path)


def test_a_checkpoint_of_the_old_format_is_refused_with_the_way_on(tmp_path):
    old = {"model": {"w": torch.zeros(2)}, "format_version": 1, "step": 3, "config": {}}
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(ConfigError, match="format 1.*format 2 only.*model.weights="):
        checkpoint.load_file(tmp_path / "old.pt")


def test_not_a_checkpoint_is_refused_clearly(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "weights.pt")
    with pytest.raises(ConfigError, match="not an athanor training checkpoint"):
        checkpoint.load_file(tmp_path / "weights.pt")


def test_disk_check_refuses_unwritable_folder_and_warns_when_space_is_short(tmp_path, caplog):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="not writable"):
        check_disk(tmp_path / "file" / "checkpoints", 1, copies=1)
    with caplog.at_level(logging.WARNING):
        check_disk(tmp_path / "ok", 2**20, copies=3)
        assert not caplog.text
        check_disk(tmp_path / "ok", 2**60, copies=3)
    assert "free" in caplog.text and "checkpoint.on_error" in caplog.text


def test_old_files_are_pruned_only_once_the_new_one_is_on_disk(tmp_path, monkeypatch):
    """The fsync runs beside training; until it is done the previous file is the safe one."""
    ckpt = Checkpointer(tmp_path, CheckpointSettings(keep_steps=1))
    checkpoint_data = {"config": {}, "state": {"model": {"w": torch.arange(4.0)}}}
    ckpt.save(checkpoint_data, step=1)
    ckpt.wait()
    synced, release = [], threading.Event()

    def slow_fsync(path):
        release.wait(timeout=30)
        synced.append(path.name)

    monkeypatch.setattr(checkpoint, "_fsync_file", slow_fsync)
    ckpt.save(checkpoint_data, step=2)
    names = sorted(p.name for p in tmp_path.glob("step_*.pt"))
    assert names == ["step_000000001.pt", "step_000000002.pt"] and not synced
    release.set()
    ckpt.wait()
    assert synced == ["step_000000002.pt"]
    assert [p.name for p in tmp_path.glob("step_*.pt")] == ["step_000000002.pt"]
