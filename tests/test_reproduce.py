"""`athanor reproduce`, `athanor diff` and config provenance, through the real CLI: a run folder
holds what a re-run needs; a re-run of a digits run (and of a 2-process DDP run) is identical;
changed data is warned about and fails the comparison; two sweep jobs are diffed; every config
value names the file, preset or override it came from."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import yaml

from conftest import FAST, cli

TINY = (*FAST, "model=mlp", "data=digits", "trainer.max_steps=6")


def reproduce(run: Path, *args: str, cwd: Path, expect: int | None = 0):
    return cli("athanor", "reproduce", str(run), *args, cwd=cwd, expect=expect, timeout=300)


def test_a_digits_run_reproduces_identically_with_its_own_config(train, tmp_path):
    """The run's folder names its config, data, code and device; the project's conf/ file is
    changed after the run, and the re-run still uses the run's own value (pinned) and is
    bitwise equal; --steps 3 re-runs only the first 3 steps, the schedule unchanged."""
    (tmp_path / "conf" / "optim").mkdir(parents=True)
    conf = tmp_path / "conf" / "optim" / "adamw.yaml"
    conf.write_text("name: adamw\nlr: 2.0e-3\n")
    run = train(*TINY).run_dir
    summary = json.loads((run / "summary.json").read_text())
    rerun = summary["rerun"]
    assert rerun["device"]["type"] == "cpu" and rerun["device"]["threads"] >= 1
    assert (rerun["determinism"]["seed"], rerun["determinism"]["deterministic"]) == (0, False)
    assert summary["argv"] == list(TINY) and Path(summary["cwd"]) == tmp_path
    assert yaml.safe_load((run / rerun["config"]).read_text())["optim"]["lr"] == 2.0e-3
    data = json.loads((run / rerun["data_fingerprint"]["file"]).read_text())
    assert (
        data["splits"]["train"]["samples"] == 1438 and data["splits"]["train"]["images"]["sha256"]
    )
    provenance = yaml.safe_load((run / "provenance.yaml").read_text())
    assert provenance["optim.lr"] == {"value": 2.0e-3, "from": "conf/optim/adamw.yaml (project)"}

    conf.write_text("name: adamw\nlr: 5.0e-1\n")  # today's config is not the run's
    again = reproduce(run, cwd=tmp_path)
    assert "++optim.lr=0.002" in again.output
    assert "identical: " in again.output and "bitwise equal" in again.output, again.output
    copy = run.with_name(run.name + ".reproduce-1")
    assert json.loads((copy / "summary.json").read_text())["steps"] == 6
    assert json.loads((copy / "reproduce.json").read_text())["within"] is True

    short = reproduce(run, "--steps", "3", cwd=tmp_path)
    assert "identical: " in short.output, short.output
    cut = json.loads((run.with_name(run.name + ".reproduce-2") / "summary.json").read_text())
    assert (cut["steps"], cut["stop_reason"]) == (3, "stop_at_step")


def write_table(path: Path, flip: int = 0) -> None:
    """A small classification table; ``flip`` labels of the first rows changed."""
    rng = random.Random(0)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "b", "label"])
        for i in range(200):
            a, b = rng.random(), rng.random()
            label = int(a + b > 1)
            writer.writerow([f"{a:.4f}", f"{b:.4f}", 1 - label if i < flip else label])


def test_reproduce_after_the_data_changed_warns_and_fails(train, tmp_path):
    write_table(tmp_path / "t.csv")
    table = ("data=table", "data.path=t.csv", "data.target=label", "model=mlp", *FAST)
    run = train(*table, "trainer.max_steps=4").run_dir
    write_table(tmp_path / "t.csv", flip=60)  # the same file name, other content
    result = reproduce(run, cwd=tmp_path, expect=1)
    assert "warning: data fingerprint: data.path.sample_sha256 differs" in result.output
    assert "largest diff" in result.output and "beyond the tolerance atol=0" in result.output
    assert "train/loss" in result.output.split("largest diff", 1)[1], result.output


@pytest.mark.slow
def test_a_two_process_ddp_run_reproduces(train, tmp_path):
    run = train(*TINY, "distributed.nproc_per_node=2", timeout=300).run_dir
    assert json.loads((run / "summary.json").read_text())["rerun"]["device"]["world_size"] == 2
    again = reproduce(run, cwd=tmp_path)
    assert "distributed.nproc_per_node=2" in again.output
    assert "identical: " in again.output, again.output


def test_diff_of_two_sweep_jobs(tmp_path):
    cli("athanor.train", "-m", *TINY, "optim.lr=1.0e-3,1.0e-2", cwd=tmp_path, timeout=300)
    jobs = sorted(p for p in (tmp_path / "outputs" / "multirun").glob("*/*/*") if p.is_dir())
    assert len(jobs) == 2
    text = cli("athanor", "diff", *map(str, jobs), "--plot", "both.png", cwd=tmp_path).stdout
    assert max(len(line) for line in text.splitlines()) <= 100
    config = text.split("config:", 1)[1].split("environment:", 1)[0]
    assert "optim.lr" in config and "0.001" in config and "0.01" in config
    assert "environment: the same" in text
    metrics = text.split("metrics:", 1)[1].splitlines()
    assert metrics[1].split()[:3] == ["best", "val/acc", "(monitored)"], metrics
    assert (tmp_path / "both.png").stat().st_size > 1000
    data = json.loads(cli("athanor", "diff", *map(str, jobs), "--json", cwd=tmp_path).stdout)
    assert data["config"]["optim.lr"] == [1.0e-3, 1.0e-2]
    assert list(data["metrics"])[0] == data["monitor"] == "val/acc"
    a, b = data["metrics"]["val/loss"]["final"]
    assert a != b
    again = reproduce(jobs[1], cwd=tmp_path)  # a sweep job re-runs as one run, the same
    command = next(line for line in again.stdout.splitlines() if line.startswith("reproduce:"))
    head, _, overrides = command.partition(" -m athanor.train ")
    threads = json.loads((jobs[1] / "summary.json").read_text())["rerun"]["device"]["threads"]
    assert f"OMP_NUM_THREADS={threads}" in head.split(), command  # the job's own threads
    assert "optim.lr=0.01" in overrides.split() and "-m" not in overrides.split(), command
    assert "identical: " in again.output, again.output


def provenance_lines(text: str) -> dict[str, str]:
    """key -> the value and source columns of `--cfg job --provenance`."""
    rows = {}
    for line in text.splitlines():
        key, _, rest = line.partition(" = ")
        rows[key.strip()] = rest
    return rows


def test_provenance_names_project_files_presets_group_defaults_and_overrides(
    train, tmp_path, monkeypatch, capsys
):
    (tmp_path / "conf" / "optim").mkdir(parents=True)
    (tmp_path / "conf" / "optim" / "adamw.yaml").write_text("name: adamw\nlr: 1.23e-2\n")
    (tmp_path / "conf" / "experiment").mkdir()
    (tmp_path / "conf" / "experiment" / "small.yaml").write_text(
        "# @package _global_\ndata:\n  batch_size: 16\n"
    )
    rows = provenance_lines(train("data.val_split=0.3", "--cfg", "job", "--provenance").stdout)
    assert rows["optim.lr"].endswith("conf/optim/adamw.yaml (project)"), rows["optim.lr"]
    assert rows["data.batch_size"].endswith("group-wide default (src/athanor/config/groups.py)")
    assert rows["data.val_split"].endswith("command line (data.val_split=0.3)")
    assert rows["seed"].endswith("conf/train.yaml (athanor)")
    preset = provenance_lines(train("experiment=small", "--cfg", "job", "--provenance").stdout)
    assert "experiment preset conf/experiment/small.yaml (project)" in preset["data.batch_size"]
    assert preset["data.batch_size"].split()[0] == "16"

    monkeypatch.chdir(tmp_path)  # athanor.compose reads the current folder's conf/ first
    import athanor

    config = athanor.compose(["experiment=small"], provenance=True)
    assert config["data"]["batch_size"] == 16
    printed = provenance_lines(capsys.readouterr().out)
    assert printed["data.batch_size"] == preset["data.batch_size"]


def test_a_resumed_runs_provenance_names_its_saved_config(train, tmp_path):
    run = train(*TINY).run_dir
    train(f"resume={run}", "trainer.epochs=2", "trainer.max_steps=8", "logger.progress=plain")
    provenance = yaml.safe_load((run / "provenance.yaml").read_text())
    assert provenance["optim.lr"]["from"] == f"resume's saved config ({run})"
    assert provenance["trainer.max_steps"] == {
        "value": 8,
        "from": "command line (trainer.max_steps=8)",
    }


@pytest.mark.parametrize(
    ("name", "damage", "words"),
    [
        ("config.yaml", b"optim: [1,\n", "config.yaml, line 2, column 1: not valid YAML"),
        ("config.yaml", b"- 1\n", "config.yaml is damaged: it holds a list"),
        ("config.yaml", b"\xff\xfe", "config.yaml is damaged: byte 0 is not UTF-8"),
        (".hydra/overrides.yaml", b"- [a\n", "overrides.yaml, line 2, column 1: not valid YAML"),
    ],
    ids=["not_yaml", "not_a_mapping", "not_text", "overrides"],
)
def test_a_damaged_run_file_is_named_by_reproduce_and_diff(train, tmp_path, name, damage, words):
    """A run folder's YAML edited by hand or cut short: `reproduce` and `diff` name the file
    (and the line), exit 2 without a traceback, and leave the folder as it was."""
    run = train(*TINY).run_dir
    (run / name).write_bytes(damage)
    before = sorted(p.name for p in run.parent.iterdir())
    commands = [("reproduce", str(run)), ("diff", str(run), str(run))]
    for command in commands if name == "config.yaml" else commands[:1]:
        result = cli("athanor", *command, cwd=tmp_path, expect=2)
        text = " ".join(result.stderr.split())
        assert words in text and "Traceback" not in result.stderr, result.stderr
    assert sorted(p.name for p in run.parent.iterdir()) == before  # no re-run folder
    assert (run / name).read_bytes() == damage
