"""Hydra multirun sweeps (one complete run folder per job), the monitored metric returned to
sweepers, and `athanor report` over a sweep or outputs folder."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from conftest import CONF, cli

# 3 optimizer steps per epoch, 2 epochs: every job trains and validates twice in about a second
TINY = (
    "trainer.epochs=2",
    "trainer.limit_train_batches=3",
    "logger.tensorboard=false",
    "logger.progress=plain",
    "checkpoint.enabled=false",
)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, Path, str]:
    """A 2x2 sweep plus one failed run, in one outputs folder: (cwd, sweep folder, output).
    A config error beside them leaves no folder at all."""
    cwd = tmp_path_factory.mktemp("sweep")
    result = cli("athanor.train", "-m", *TINY, "optim.lr=0.1,0.05", "optim=sgd,adamw", cwd=cwd)
    before = set(cwd.rglob("*"))
    refused = cli("athanor.train", *TINY, "optim.lr=-0.1", cwd=cwd, expect=2)
    assert "Nothing was written: the run never started." in " ".join(refused.stderr.split())
    new = set(cwd.rglob("*")) - before  # at most the empty date folder Hydra made for it
    assert all(p.is_dir() and not any(p.iterdir()) for p in new), sorted(new)
    # a run that fails for real (NaN loss at step 2): its folder and record stay
    cli("athanor.train", *TINY, "optim=sgd", "optim.lr=1.0e+30", cwd=cwd, expect=1)
    (folder,) = (cwd / "outputs" / "multirun").glob("*/*")
    return cwd, folder, result.output


def jobs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


@pytest.mark.slow
def test_every_combination_is_a_complete_run_in_its_own_folder(sweep):
    _, folder, output = sweep
    assert folder.name.endswith("_mlp_digits")
    runs = jobs(folder)
    names = [p.name for p in runs]
    assert [n.split("_")[0] for n in names] == ["0", "1", "2", "3"]
    combos = set()
    for run in runs:
        assert (run / ".hydra" / "overrides.yaml").is_file() and (run / "train.log").is_file()
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["epochs"] == 2
        optim = _config(run)["optim"]
        combos.add((optim["name"], optim["lr"]))
        # readable: the job's overrides name its folder
        assert f"optim={optim['name']}" in run.name and f"optim.lr={optim['lr']}" in run.name
    assert combos == {("sgd", 0.1), ("sgd", 0.05), ("adamw", 0.1), ("adamw", 0.05)}
    # each job is a process of the sweep's pool, its output in its folder's console.log
    assert sum((run / "console.log").read_text().count("run completed") for run in runs) == 4


def _config(run: Path) -> dict:
    import yaml

    return yaml.safe_load((run / ".hydra" / "config.yaml").read_text())


def test_the_train_task_returns_the_monitored_metric(tmp_path, monkeypatch):
    """What a sweeper (Optuna) receives from each job: the best monitored value of the run."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from athanor.cli import train as athanor_cli
    from athanor.cli.compose import prepare_hydra

    monkeypatch.chdir(tmp_path)
    prepare_hydra()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=list(TINY), return_hydra_config=True)
    run_dir = tmp_path / "run"
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
    hydra_config = HydraConfig.instance()
    monkeypatch.setattr(hydra_config, "cfg", hydra_config.cfg)  # restored after the test
    hydra_config.set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    value = athanor_cli._train_task(cfg)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["monitor"] == "val/acc" and 0 < value <= 1
    assert value == summary["best"]["val/acc"]


@pytest.mark.slow
def test_report_table_of_a_sweep_sorted_by_the_monitored_metric(sweep, athanor_cmd):
    _, folder, _ = sweep
    fitted = athanor_cmd("report", str(folder))  # fits a terminal: keys and headers shortened
    table = [line for line in fitted.stdout.splitlines() if line.startswith("|")]
    assert max(len(line) for line in table) <= 100, fitted.stdout
    assert "| lr " in fitted.stdout and "best and final: val/acc" in fitted.stdout
    result = athanor_cmd("report", str(folder), "--plot", "--wide")  # every header whole
    lines = [line for line in result.stdout.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["run", "optim.lr", "optim"]  # only the overrides that vary
    assert {"best val/acc", "final val/acc", "final val/loss", "epochs", "status"} <= set(header)
    assert len(lines) == 2 + 4
    expected = sorted(
        (json.loads((run / "summary.json").read_text())["best"]["val/acc"] for run in jobs(folder)),
        reverse=True,
    )
    with (folder / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [float(r["best val/acc"]) for r in rows] == pytest.approx(expected)
    assert {r["status"] for r in rows} == {"completed"} and {r["epochs"] for r in rows} == {"2"}
    assert {(r["optim"], r["optim.lr"]) for r in rows} == {
        ("sgd", "0.1"),
        ("sgd", "0.05"),
        ("adamw", "0.1"),
        ("adamw", "0.05"),
    }
    assert (folder / "report.md").read_text().count("| completed |") == 4
    assert (folder / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_report_of_outputs_shows_failed_and_running_runs(sweep, athanor_cmd):
    cwd, folder, _ = sweep
    # a run still in progress: what a running run leaves (status running, one validation so far)
    live = cwd / "outputs" / "live"
    shutil.copytree(jobs(folder)[0], live)
    first = (live / "metrics.jsonl").read_text().splitlines()[0]
    (live / "metrics.jsonl").write_text(first + "\n")
    summary = json.loads((live / "summary.json").read_text())
    for key in ("final", "best", "epochs", "wall_time_s"):
        summary.pop(key)
    (live / "summary.json").write_text(json.dumps({**summary, "status": "running"}))

    athanor_cmd("report", str(cwd / "outputs"))
    with (cwd / "outputs" / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    statuses = [r["status"] for r in rows]
    assert sorted(statuses) == ["completed"] * 4 + ["failed", "running"]
    assert statuses[-1] == "failed" and rows[-1]["best val/acc"] == ""  # no metric: listed last
    running = rows[statuses.index("running")]
    assert float(running["best val/acc"]) == json.loads(first)["val/acc"]
    assert running["run"] == "live" and running["epochs"] == "1"


def test_report_of_a_folder_without_runs_says_so(tmp_path, athanor_cmd):
    result = athanor_cmd("report", str(tmp_path), expect=2)
    assert "No run folders" in result.stderr
