"""`hydra/launcher=slurm` on a real one-node SLURM cluster (tests/servers.py: slurm-wlm and munge
on 127.0.0.1, accounting off so `sacct` fails as on many clusters): a sweep's jobs record their
SLURM job, a requeued job resumes in its folder, the time-limit signal checkpoints and submitit
requeues, and what SLURM cannot hold is refused before anything is submitted. Without the
packages or root the cluster tests skip, saying why; the config checks run everywhere."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from athanor.errors import ConfigError
from athanor.sweep import slurm
from conftest import FAST, ROOT, cli
from servers import Slurm, slurm_unavailable

SWEEP = ("-m", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "model=mlp", *FAST)
# a run of a few seconds, long enough to be requeued while it trains: 4-sample batches, 2 epochs
LONG = ("data.batch_size=4", "trainer.epochs=2", "hydra.launcher.timeout_min=60")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = slurm_unavailable()
    if why:
        pytest.skip(why)
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    server = Slurm(tmp_path_factory.mktemp("slurm")).start()
    try:
        yield server
    finally:
        server.stop()


def jobs_of(cwd: Path) -> list[Path]:
    """The sweep's job folders, by job number."""
    (sweep,) = (cwd / "outputs" / "multirun").glob("*/*")
    jobs = [p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(jobs, key=lambda p: int(p.name.split("_")[0]))


def summary(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


def logged_steps(job: Path) -> list[int]:
    """Every training step the job's log shows (both starts append to the same train.log)."""
    text = (job / "train.log").read_text()
    return [int(s) for s in re.findall(r"\] - epoch \d+ step (\d+)/", text)]


def start_sweep(cluster: Slurm, cwd: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, **cluster.env, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "athanor.train", *SWEEP, *overrides],
        cwd=cwd,
        env=env,
        stdout=(cwd / "sweep.txt").open("w"),
        stderr=subprocess.STDOUT,
    )


def wait_for_epochs(
    cwd: Path,
    proc: subprocess.Popen,
    jobs: int,
    file: str = "metrics.jsonl",
    timeout_s: float = 120,
):
    """The job folders once each has ``file`` with something in it (metrics.jsonl: its first
    epoch, so a checkpoint exists; summary.json: its run started)."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, (cwd / "sweep.txt").read_text()[-3000:]
        assert time.monotonic() < deadline, (cwd / "sweep.txt").read_text()[-3000:]
        found = [p for p in (cwd / "outputs").rglob(file) if p.read_text().strip()]
        if len(found) == jobs:
            return sorted((p.parent for p in found), key=lambda p: int(p.name.split("_")[0]))
        time.sleep(0.2)


def finished(proc: subprocess.Popen, cwd: Path, timeout_s: float = 180) -> str:
    code = proc.wait(timeout=timeout_s)
    text = (cwd / "sweep.txt").read_text()
    assert code == 0, text[-3000:]
    return text


def assert_resumed_once(job: Path, first: dict) -> dict:
    """Completed on the second start under the same SLURM id, resumed once from the checkpoint
    of the first start, no step logged twice and none missing, every epoch once."""
    done = summary(job)
    assert done["status"] == "completed", done
    assert done["slurm"]["job_id"] == first["slurm"]["job_id"]
    assert done["slurm"]["restart_count"] == 1 and first["slurm"]["restart_count"] == 0
    (resumed,) = done["resumes"]
    assert 0 < resumed["step"] < done["steps"] and resumed["checkpoint"].endswith(".pt")
    steps = logged_steps(job)
    assert steps == list(range(1, done["steps"] + 1)), "a step logged twice or missing"
    epochs = [
        json.loads(line)["epoch"] for line in (job / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [1, 2]
    return done


@pytest.mark.slow
def test_a_sweep_of_two_jobs_records_each_slurm_job(cluster, tmp_path):
    result = cli(
        "athanor.train", *SWEEP, "optim.lr=0.1,0.05", cwd=tmp_path, env=cluster.env, timeout=300
    )
    jobs = jobs_of(tmp_path)
    assert len(jobs) == 2
    ids = set()
    for index, job in enumerate(jobs):
        s = summary(job)
        assert s["status"] == "completed", s
        info = s["slurm"]
        assert info["array_index"] == index and info["restart_count"] == 0
        assert info["job_id"].endswith(f"_{index}")
        ids.add(info["job_id"])
        assert cluster.job(info["job_id"])["ArrayTaskId"] == str(index)  # SLURM's own word
        assert s["command"].startswith("train ") and "optim.lr=" in s["command"]
        assert "_submit" not in s["command"] and "resume=auto" in s["command"]
        assert (
            f"SLURM job {info['job_id']} (array index {index}), restart 0"
            in (job / "train.log").read_text()
        )
    assert len(ids) == 2 and "Traceback" not in result.output


@pytest.mark.slow
def test_requeued_and_timed_out_jobs_resume_in_their_folders_under_their_ids(cluster, tmp_path):
    """Job 0 is requeued by `scontrol requeue` (SIGTERM, as a preemption), job 1 gets the
    time-limit signal (`--signal=USR1@120` in the job script; sent here with scancel rather than
    waiting an hour for the limit): both checkpoint mid-epoch, SLURM starts them again under the
    same id, and each resumes in its own folder and completes. The two run side by side."""
    proc = start_sweep(cluster, tmp_path, *LONG, "optim.lr=0.1,0.05")
    preempted, timed_out = wait_for_epochs(tmp_path, proc, jobs=2)
    first = [summary(preempted), summary(timed_out)]
    cluster.command("scontrol", "requeue", first[0]["slurm"]["job_id"])
    cluster.command("scancel", "--signal=USR1", first[1]["slurm"]["job_id"])
    finished(proc, tmp_path)
    assert "SIGTERM received" in (preempted / "train.log").read_text()
    log = (timed_out / "train.log").read_text()
    assert "SIGUSR1 received" in log and "passing SIGUSR1 on" in log
    # submitit's handler, called once the run had saved, asked SLURM to requeue the job
    submitit = "".join(p.read_text() for p in tmp_path.rglob(".submitit/*_1/*_log.err"))
    assert "Caught signal SIGUSR1" in submitit and "DUE TO JOB REQUEUE" in submitit, submitit
    for job, before in zip((preempted, timed_out), first, strict=True):
        assert_resumed_once(job, before)
    assert jobs_of(tmp_path) == [preempted, timed_out]  # no other folder
    script = next(tmp_path.rglob(".submitit/*/*_submission.sh")).read_text()
    assert "#SBATCH --signal=USR1@120" in script and "#SBATCH --ntasks-per-node=1" in script


@pytest.mark.slow
def test_a_job_killed_without_a_result_ends_the_sweep_naming_it(cluster, tmp_path):
    """No accounting, so no sacct: the job's end is read from squeue. Before, a job that died
    without a result (SIGKILL here: the OOM killer, a lost node) left the sweep waiting forever."""
    proc = start_sweep(cluster, tmp_path, *LONG)
    (job,) = wait_for_epochs(tmp_path, proc, jobs=1, file="summary.json")
    job_id = summary(job)["slurm"]["job_id"]
    cluster.command("scancel", "--signal=KILL", job_id)
    assert proc.wait(timeout=120) == 1, (tmp_path / "sweep.txt").read_text()[-3000:]
    said = (tmp_path / "sweep.txt").read_text()
    assert re.search(
        f"Sweep failed: SLURM job {job_id} ended \\(CANCELLED\\) without a result", said
    )
    assert "Traceback" not in said


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("hydra.launcher.cpus_per_task=64", "64 CPUs"),
        ("hydra.launcher.mem_gb=64", "mem_gb=64"),
        ("hydra.launcher.partition=nosuch", "nosuch"),
        ("hydra.launcher.constraint=bigmem", "SLURM refused the sweep's jobs (sbatch: error:"),
    ],
)
def test_what_no_node_can_hold_is_refused_before_any_job(cluster, tmp_path, override, said):
    before = set(cluster.command("squeue", "-h", "-o", "%i").split())
    result = cli("athanor.train", *SWEEP, override, cwd=tmp_path, env=cluster.env, expect=2)
    assert "Config error" in result.stderr and said in result.stderr, result.output
    assert "Traceback" not in result.output
    assert set(cluster.command("squeue", "-h", "-o", "%i").split()) <= before  # none submitted


def test_without_slurm_on_this_machine_the_sweep_says_where_to_start_it(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    no_slurm = {"PATH": str(Path(sys.executable).parent)}  # python and nothing of SLURM's
    result = cli("athanor.train", *SWEEP, cwd=tmp_path, env=no_slurm, expect=2)
    assert "Config error: hydra/launcher=slurm submits with SLURM's sbatch and srun" in (
        result.stderr
    )
    assert "login node" in result.stderr and "Traceback" not in result.output


def test_tasks_and_cpus_follow_what_the_job_asks_for():
    assert slurm.tasks_per_node(0) == 1 and slurm.tasks_per_node(None) == 1
    assert slurm.tasks_per_node(4) == 4
    assert slurm.cpus_per_task(None, 1, 0) == 1  # data.num_workers=null: no extra workers
    assert slurm.cpus_per_task(3, 1, 4) == 4  # a GPU task: one process and its 3 workers
    assert slurm.cpus_per_task(2, 2, 0) == 6  # a CPU task starts 2 processes


def test_the_launcher_keys_are_checked_with_their_valid_values():
    good = {
        "nodes": 1,
        "tasks_per_node": 1,
        "gpus_per_node": 0,
        "cpus_per_task": 1,
        "timeout_min": 60,
        "max_num_timeout": 3,
        "signal_delay_s": 120,
        "mem_gb": None,
    }
    slurm.check_settings(good)
    for key, value, said in [
        ("tasks_per_node", 0, "at least 1"),
        ("mem_gb", "lots", "memory per node in GB"),
        ("signal_delay_s", 3600, "not before the time limit"),
    ]:
        with pytest.raises(ConfigError, match=said):
            slurm.check_settings({**good, key: value})
    node = [{"name": "n1", "cpus": 2, "mem_mb": 2000, "gpus": 0}]
    slurm.check_fits({**good, "cpus_per_task": 2}, node)
    with pytest.raises(ConfigError, match="n1: 2 CPUs"):
        slurm.check_fits({**good, "gpus_per_node": 1, "tasks_per_node": 1}, node)
