"""Experiment trackers: the fan-out and a third-party tracker, MLflow in its default local store
and behind a real server (killed and resumed), W&B offline read back from the files it writes,
the sweep's HPARAMS view, and the config errors."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from athanor.config.settings import LoggerSettings
from athanor.observe.trackers import TRACKERS, NullTracker, open_trackers
from athanor.observe.trackers.swept_keys import HEADLINE
from conftest import cli, free_port
from test_checkpoint import TINY
from test_resume import start, wait_for
from test_train_cli import read_scalars

QUIET = ("logger.plots=false", "logger.image_grid=false")


# -- the interface and the fan-out --------------------------------------------------------------
class Recording(NullTracker):
    def __init__(self):
        self.calls: list[tuple] = []

    def scalars(self, values, step):
        self.calls.append(("scalars", step, dict(values)))

    def params(self, params):
        self.calls.append(("params", dict(params)))

    def artifact(self, path):
        self.calls.append(("artifact", path.name))

    def finish(self, status):
        self.calls.append(("finish", status))


class Broken(NullTracker):
    def scalars(self, values, step):
        raise ConnectionError("server gone")


RECORDED: list[Recording] = []


@TRACKERS.register("recording")
def recording(ctx):
    """A third-party tracker, registered like any component."""
    RECORDED.append(Recording())
    return RECORDED[-1]


@TRACKERS.register("broken")
def broken(ctx):
    """A tracker that loses its server after starting."""
    return Broken()


@TRACKERS.register("unreachable")
def unreachable(ctx):
    """A tracker whose server never answers."""
    raise ConnectionRefusedError("127.0.0.1:9 refused")


def test_every_tracker_has_the_null_trackers_interface():
    from athanor.observe.trackers.mlflow import MlflowTracker
    from athanor.observe.trackers.tensorboard import TensorBoardTracker
    from athanor.observe.trackers.wandb import WandbTracker

    api = {n for n in vars(NullTracker) if not n.startswith("_")}
    assert {"scalars", "params", "artifact", "finish", "flush"} <= api
    for cls in (TensorBoardTracker, MlflowTracker, WandbTracker):
        assert issubclass(cls, NullTracker)
        for name in set(vars(cls)) & api:  # an override keeps the interface's signature
            import inspect

            base = inspect.signature(getattr(NullTracker, name))
            assert list(inspect.signature(getattr(cls, name)).parameters) == list(
                base.parameters
            ), f"{cls.__name__}.{name}"


def test_a_failing_tracker_warns_once_and_the_others_get_everything(tmp_path, caplog):
    settings = LoggerSettings(trackers=["recording", "unreachable", "broken"])
    config = {"optim": {"lr": 0.1}, "model": {"name": "mlp"}}
    with caplog.at_level(logging.WARNING, logger="athanor"):
        fan = open_trackers(settings, tmp_path, resumed_step=None, config=config)
        for step in (1, 2, 3):
            fan.scalars({"train/loss": 1.0 / step}, step)
        (tmp_path / "summary.json").write_text("{}")
        fan.finish("completed")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # one each, not one per call
    assert "tracker unreachable: could not start" in warnings[0]
    assert "tracker broken: scalars failed" in warnings[1] and "server gone" in warnings[1]
    assert str(tmp_path) in warnings[1]  # where the results still are
    calls = RECORDED[-1].calls
    assert calls[0] == ("params", {"optim.lr": 0.1, "model.name": "mlp"})
    assert [c[1] for c in calls if c[0] == "scalars"] == [1, 2, 3]
    assert calls[-2:] == [("artifact", "summary.json"), ("finish", "completed")]


def test_an_unknown_tracker_is_a_config_error_naming_the_valid_ones(tmp_path):
    result = cli("athanor.train", *TINY, "logger.trackers=[tensorbord]", cwd=tmp_path, expect=2)
    text = " ".join(result.stderr.split())
    assert "unknown tracker 'tensorbord'. Did you mean 'tensorboard'?" in text
    assert "Valid trackers: mlflow, none, tensorboard, wandb." in text
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("tb")) and not list(tmp_path.rglob("checkpoints"))
    assert not result.run_dirs()  # refused before any work: no run folder is left


# -- MLflow ---------------------------------------------------------------------------------------
def mlflow_runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {uri}"
    return client, client.search_runs([found.experiment_id], order_by=["attributes.start_time"])


def steps(client, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def hparams_keys(tb_dir: Path) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    data = [plugin_data_pb2.HParamsPluginData.FromString(v) for v in content.values()]
    return [k for d in data for k in d.session_start_info.hparams]


@pytest.mark.slow
def test_sweep_in_the_default_local_mlflow_store_and_a_hparams_view_of_what_varied(tmp_path):
    """No server: ./mlruns beside outputs/. Two jobs, grouped; HPARAMS shows what varied."""
    cli(
        "athanor.train",
        "-m",
        *TINY,
        "trainer.epochs=2",
        "optim.lr=1.0e-3,3.0e-3",
        "logger.trackers=[tensorboard,mlflow]",
        "logger.mlflow.log_checkpoint=best",
        "logger.plots=true",
        cwd=tmp_path,
    )
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2
    client, runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", "athanor")
    assert len(runs) == 2
    by_id = {r.info.run_id: r for r in runs}
    for job in jobs:
        saved = json.loads((job / "trackers.json").read_text())
        run = by_id[saved["mlflow"]["run_id"]]  # the id in the run folder names the MLflow run
        assert run.info.status == "FINISHED"
        config = json.loads((job / "summary.json").read_text())
        assert run.data.tags["athanor.run_folder"] == str(job)
        assert run.data.tags["athanor.git_commit"] == str(config["git"]["commit"])
        assert "optim.lr=" in run.data.tags["athanor.command"]
        assert run.data.tags["athanor.swept"] == "optim.lr"
        assert run.data.tags["athanor.sweep"] == str(job.parent)  # one group for the sweep
        # params: the whole flat config
        assert len(run.data.params) > 60 and run.data.params["checkpoint.enabled"] == "True"
        # metrics: TensorBoard's names and steps
        tb = read_scalars(job / "tb")
        for key in ("train/loss", "lr", "val/acc", "epoch"):
            assert steps(client, run.info.run_id, key) == [e.step for e in tb[key]], key
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"summary.json", "plots", "checkpoints"} <= artifacts
        assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == [
            "checkpoints/best.pt"
        ]
        # the HPARAMS view: the swept key and the headline keys, not the whole config (the
        # plugin stores a map: TensorBoard orders the columns itself)
        assert set(hparams_keys(job / "tb")) == {"optim.lr", *HEADLINE}
    lrs = sorted(float(by_id[r].data.params["optim.lr"]) for r in by_id)
    assert lrs == [1.0e-3, 3.0e-3]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 with a sqlite backend; stopped after the test."""
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            break
        except OSError:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the MLflow server did not start"
            time.sleep(0.5)
    yield uri
    os.killpg(proc.pid, signal.SIGTERM)  # the server's own session: its workers go too
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.mark.slow
def test_a_killed_run_resumes_the_same_mlflow_run_on_a_server_with_each_step_once(
    tmp_path, mlflow_server
):
    server = (
        "logger.trackers=[tensorboard,mlflow]",
        f"logger.mlflow.tracking_uri={mlflow_server}",
        "logger.mlflow.experiment=lr-study",
    )
    proc, log = start(tmp_path, *TINY, *server, "trainer.epochs=1000", "hydra.run.dir=run")
    wait_for(log, "epoch 2/1000 done", proc, timeout=300)
    wait_for(log, "step 20/", proc)  # past the step-16 checkpoint: these steps get redone
    proc.kill()  # SIGKILL: no handler, no flush, no final status
    proc.wait(timeout=30)
    run_folder = tmp_path / "run"
    client, runs = mlflow_runs(mlflow_server, "lr-study")
    assert [r.info.status for r in runs] == ["RUNNING"]  # nobody told MLflow it ended
    cli("athanor.train", *TINY, *server, "trainer.epochs=4", f"resume={run_folder}", cwd=tmp_path)

    client, runs = mlflow_runs(mlflow_server, "lr-study")
    assert len(runs) == 1  # the same run, continued
    (run,) = runs
    assert (
        run.info.run_id
        == json.loads((run_folder / "trackers.json").read_text())["mlflow"]["run_id"]
    )
    assert run.info.status == "FINISHED"
    assert steps(client, run.info.run_id, "train/loss") == list(range(1, 33))  # each step once
    assert steps(client, run.info.run_id, "val/acc") == [8, 16, 24, 32]
    tb = read_scalars(run_folder / "tb")
    assert [e.step for e in tb["train/loss"]] == list(range(1, 33))
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val/acc")}
    records = [json.loads(line) for line in (run_folder / "metrics.jsonl").read_text().splitlines()]
    assert history == {r["step"]: pytest.approx(r["val/acc"]) for r in records}
    assert run.data.params["trainer.epochs"] == "1000"  # params: what the run started with
    assert "summary.json" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_an_mlflow_server_out_of_reach_warns_once_and_the_run_completes(tmp_path):
    nobody = f"http://127.0.0.1:{free_port()}"  # a port nothing listens on
    result = cli(
        "athanor.train",
        *TINY,
        "trainer.epochs=1",
        "logger.trackers=[tensorboard,mlflow]",
        f"logger.mlflow.tracking_uri={nobody}",
        cwd=tmp_path,
    )
    warnings = [line for line in result.output.splitlines() if "tracker mlflow" in line]
    assert len(warnings) == 1 and "could not start" in warnings[0], result.output[-2000:]
    assert result.summary()["status"] == "completed"
    assert read_scalars(result.run_dir / "tb")["train/loss"]  # the other tracker got it all
    assert not (result.run_dir / "trackers.json").exists()  # no run id to resume from


# -- W&B ------------------------------------------------------------------------------------------
def wandb_records(path: Path) -> list:
    """The records of a .wandb file: W&B's log format (a 7-byte header, then 32 KiB blocks of
    [crc32, length, type] + protobuf chunks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, out, chunk = path.read_bytes(), 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            break
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(chunk)
            out.append(record)
            chunk = b""
    return out


def wandb_run(folder: Path) -> dict:
    (file,) = folder.glob("run-*.wandb")
    run: dict = {"history": {}, "config": {}, "files": folder / "files"}
    for record in wandb_records(file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["id"], run["group"] = record.run.run_id, record.run.run_group
            run["config"].update(
                {u.key: json.loads(u.value_json) for u in record.run.config.update}
            )
        elif kind == "config":
            run["config"].update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                value = (record.history.step.num, json.loads(item.value_json))
                run["history"].setdefault(key, []).append(value)
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run


@pytest.mark.slow
def test_wandb_offline_writes_the_run_and_a_resume_continues_its_id(tmp_path):
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb-home"), "WANDB_SILENT": "1"}
    args = (*TINY, "logger.trackers=[tensorboard,wandb]", "logger.wandb.mode=offline")
    cli("athanor.train", *args, "trainer.epochs=2", "hydra.run.dir=run", cwd=tmp_path, env=env)
    run_folder = tmp_path / "run"
    saved = json.loads((run_folder / "trackers.json").read_text())["wandb"]
    (first,) = (run_folder / "wandb").glob("offline-run-*")
    run = wandb_run(first)
    assert run["id"] == saved["run_id"] and run["exit_code"] == 0
    assert run["config"]["optim.lr"] == pytest.approx(1.0e-3) and len(run["config"]) > 60
    assert run["config"]["athanor.run_folder"] == str(run_folder)
    tb = read_scalars(run_folder / "tb")
    for key in ("train/loss", "val/acc"):
        assert [s for s, _ in run["history"][key]] == [e.step for e in tb[key]]
    assert (run["files"] / "summary.json").is_file()

    cli("athanor.train", *args, "trainer.epochs=3", f"resume={run_folder}", cwd=tmp_path, env=env)
    offline = sorted((run_folder / "wandb").glob("offline-run-*"))
    assert len(offline) == 2  # `wandb sync` uploads both into the one run
    resumed = wandb_run(offline[1])
    assert resumed["id"] == run["id"]
    assert [s for s, _ in resumed["history"]["train/loss"]] == list(range(17, 25))
    assert [s for s, _ in resumed["history"]["val/acc"]] == [24]
    assert resumed["exit_code"] == 0
