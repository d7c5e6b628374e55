"""The pool behind every `train -m` (issue 24): it is the default launcher; stop signals reach the
jobs (SIGINT/SIGTERM/SIGUSR1 to the sweep's parent, its kill -9); a job killed by a signal is
recorded; a damaged manifest, a second sweep into a folder in use and bad launcher keys are
handled without a traceback. Real `train -m` processes and real signals."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import ROOT, cli
from test_sweep_configs import compose_hydra

QUICK = (
    "trainer.epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "logger.tensorboard=false",
    "logger.progress=plain",
)
# jobs that run until a signal stops them: 2 steps an epoch, a checkpoint every epoch (~10-30 s
# each), so the rest after a stop resumes quickly
LONG = (
    "trainer.epochs=300",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "logger.tensorboard=false",
    "logger.progress=plain",
)
SIDE_BY_SIDE = "hydra.launcher.jobs_per_device=2"


def manifest(sweep: Path) -> dict[int, dict]:
    jobs = json.loads((sweep / "sweep_manifest.json").read_text())["jobs"]
    return {e["index"]: e for e in jobs.values()}


def summary(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "summary.json").read_text())


def start_sweep(cwd: Path, *args: str) -> subprocess.Popen:
    """`train -m <args>` in the background, in its own session: a signal goes to it alone."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "athanor.train", "-m", *args],
        cwd=cwd,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(what: str, ready: Callable[[], bool], sweep: subprocess.Popen) -> None:
    deadline = time.time() + 300
    while not ready():
        if sweep.poll() is not None:
            pytest.fail(f"the sweep ended before {what}:\n{sweep.stdout.read()[-4000:]}")
        assert time.time() < deadline, f"no {what} after 300 s"
        time.sleep(0.2)


def checkpointed(sweep_dir: Path, n: int) -> Callable[[], bool]:
    """True once ``n`` jobs have written their first checkpoint."""
    return lambda: len(list(sweep_dir.glob("*_*/checkpoints/last.pt"))) >= n


def job_pid(folder: str | Path) -> int:
    """The job's process, from the lock it holds on its run folder."""
    return json.loads((Path(folder) / ".lock").read_text())["pid"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---- the default ---------------------------------------------------------------------------------


def test_every_sweep_uses_the_pool_unless_basic_is_asked():
    default = compose_hydra()["hydra"]["launcher"]
    assert default["_target_"] == "hydra_plugins.athanor_sweeps.PoolLauncher"
    basic = compose_hydra("hydra/launcher=basic")["hydra"]["launcher"]
    assert basic["_target_"].endswith("BasicLauncher")
    # Hydra registers `basic` without a file: athanor's group check knows it all the same
    from athanor.cli.compose import check_group_choices

    assert check_group_choices(["hydra/launcher=basic"]) is None
    assert "Did you mean 'basic'?" in check_group_choices(["hydra/launcher=basik"])


# ---- stop signals --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1], ids=lambda s: s.name
)
def test_a_stop_signal_to_the_parent_stops_every_job_at_a_checkpoint(tmp_path, signum):
    """Two jobs running side by side and one queued; the signal goes to the parent alone: no
    job starts after it, both running jobs checkpoint and end interrupted, the parent exits 130.
    A second sweep into the folder meanwhile is refused, naming the first."""
    args = (*LONG, SIDE_BY_SIDE, "optim.lr=0.1,0.05,0.02", "hydra.sweep.dir=outputs/s")
    sweep_dir = tmp_path / "outputs" / "s"
    sweep = start_sweep(tmp_path, *args)
    wait_for("two checkpoints", checkpointed(sweep_dir, 2), sweep)
    if signum == signal.SIGTERM:
        second = cli("athanor.train", "-m", *args, cwd=tmp_path, expect=2)
        said = " ".join(second.stderr.split())
        # refused as it claims the folder (the path as given), or as it locks it (resolved)
        assert "sweep folder " in said and "outputs/s is in use by another sweep" in said
        assert f"(PID {sweep.pid} on " in said
        assert "Traceback" not in second.output
    os.kill(sweep.pid, signum)
    output, _ = sweep.communicate(timeout=300)
    assert sweep.returncode == 130, output
    jobs = manifest(sweep_dir)
    assert [jobs[i]["status"] for i in (0, 1, 2)] == ["interrupted", "interrupted", "pending"]
    for i in (0, 1):
        assert summary(jobs[i]["folder"])["status"] == "interrupted"
        assert not (Path(jobs[i]["folder"]) / ".lock").exists()
    assert not Path(jobs[2]["folder"]).exists()  # never started
    name = signal.Signals(signum).name
    assert f"Sweep stopped by {name}: job(s) 0, 1 checkpointed and stopped" in output
    assert "job(s) 2 not started" in output and "Traceback" not in output


ONE_JOB = (*LONG, "trainer.epochs=40", "optim.lr=0.1", "hydra.sweep.dir=outputs/s")


def one_job_checkpointed(cwd: Path) -> tuple[subprocess.Popen, str]:
    """A one-job sweep, once its job has written a checkpoint: (the sweep, the job's folder)."""
    sweep = start_sweep(cwd, *ONE_JOB)
    wait_for("a checkpoint", checkpointed(cwd / "outputs" / "s", 1), sweep)
    return sweep, manifest(cwd / "outputs" / "s")[0]["folder"]


def resumed_to_the_end(cwd: Path, folder: str) -> str:
    """The same command again: the job resumes in its folder and completes. Its output."""
    again = cli("athanor.train", "-m", *ONE_JOB, cwd=cwd)
    done = summary(folder)
    assert done["status"] == "completed" and done["epochs"] == 40 and done["resumes"]
    return again.output


@pytest.mark.slow
def test_a_sweep_stopped_by_sigterm_resumes_with_the_same_command(tmp_path):
    sweep, folder = one_job_checkpointed(tmp_path)
    os.kill(sweep.pid, signal.SIGTERM)
    assert sweep.wait(timeout=300) == 130
    assert "job 0 was interrupted, resuming it" in resumed_to_the_end(tmp_path, folder)


@pytest.mark.slow
def test_the_jobs_stop_when_the_parent_is_killed_and_the_next_start_resumes_them(tmp_path):
    sweep, folder = one_job_checkpointed(tmp_path)
    pid = job_pid(folder)
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.wait(timeout=60)
    deadline = time.time() + 120
    while alive(pid):  # the kernel's SIGTERM: the job checkpoints and ends
        assert time.time() < deadline, "the job outlived its sweep by 120 s"
        time.sleep(0.2)
    assert summary(folder)["status"] == "interrupted"
    said = resumed_to_the_end(tmp_path, folder)
    assert "Taking over the stale lock" in said  # the killed sweep's
    assert "job 0 was running, resuming it" in said


@pytest.mark.slow
def test_a_job_killed_by_a_signal_is_recorded_failed_and_reported(tmp_path, athanor_cmd):
    """SIGKILL (what the kernel's OOM killer sends) and SIGSEGV (a segfault) to two jobs: each
    is failed with the signal's name in the table, the manifest and its summary.json; its lock
    is released and `athanor report` lists it."""
    args = (*LONG, SIDE_BY_SIDE, "optim.lr=0.1,0.05", "hydra.sweep.dir=outputs/s")
    sweep_dir = tmp_path / "outputs" / "s"
    sweep = start_sweep(tmp_path, *args)
    wait_for("two checkpoints", checkpointed(sweep_dir, 2), sweep)
    jobs = manifest(sweep_dir)
    os.kill(job_pid(jobs[0]["folder"]), signal.SIGKILL)
    os.kill(job_pid(jobs[1]["folder"]), signal.SIGSEGV)
    output, _ = sweep.communicate(timeout=120)
    assert sweep.returncode == 1, output
    jobs = manifest(sweep_dir)
    for i, name in ((0, "SIGKILL"), (1, "SIGSEGV")):
        assert jobs[i]["status"] == "failed" and jobs[i]["reason"].startswith(f"killed by {name}")
        record = summary(jobs[i]["folder"])
        assert record["status"] == "failed" and record["error"] == jobs[i]["reason"]
        assert not (Path(jobs[i]["folder"]) / ".lock").exists()
    assert "out-of-memory killer" in jobs[0]["reason"] and "segmentation" in jobs[1]["reason"]
    assert "2 of 2 sweep jobs failed" in " ".join(output.split())
    athanor_cmd("report", str(sweep_dir))
    with (sweep_dir / "report.csv").open() as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["failed", "failed"]


# ---- damaged or contended sweep state ------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> tuple[Path, tuple[str, ...]]:
    cwd = tmp_path_factory.mktemp("finished")
    args = ("-m", *QUICK, "optim.lr=0.1,0.05", "hydra.sweep.dir=outputs/s")
    cli("athanor.train", *args, cwd=cwd)
    return cwd, args


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage",
    [lambda text: text[: len(text) // 2], lambda text: json.dumps([1, 2])],
    ids=["truncated", "a-list"],
)
def test_a_damaged_manifest_is_rebuilt_from_the_job_folders(finished_sweep, damage):
    cwd, args = finished_sweep
    path = cwd / "outputs" / "s" / "sweep_manifest.json"
    before = manifest(path.parent)
    path.write_text(damage(path.read_text()))
    again = cli("athanor.train", *args, cwd=cwd)
    assert (
        "could not be read" in again.output and "rebuilt from the 2 job folder(s)" in again.output
    )
    assert "job 0 completed, job 1 completed" in again.output
    assert "2 jobs (0 to run)" in again.output and "Traceback" not in again.output
    after = manifest(path.parent)
    assert {i: (e["folder"], e["status"]) for i, e in after.items()} == {
        i: (e["folder"], e["status"]) for i, e in before.items()
    }
    assert list(path.parent.glob("sweep_manifest.json.damaged-*"))  # kept, not lost


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("hydra.launcher.devices=[7]", "names GPU 7, which this machine does not have"),
        ("hydra.launcher.jobs_per_device=two", "jobs_per_device='two' has the wrong type"),
        ("hydra.launcher.gpus_per_job=0", "gpus_per_job=0 is out of range"),
    ],
)
def test_bad_launcher_keys_are_refused_before_any_job(tmp_path, key, said):
    result = cli("athanor.train", "-m", "optim.lr=0.1", key, cwd=tmp_path, expect=2)
    assert said in " ".join(result.stderr.split()) and "Traceback" not in result.output
    assert not list(tmp_path.rglob("summary.json"))


def test_each_job_gets_its_share_of_the_visible_gpus(monkeypatch):
    """A faked machine: CUDA_VISIBLE_DEVICES names what it has; ids it does not are refused."""
    from athanor.errors import ConfigError
    from athanor.sweep.slots import PoolOptions

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5,7")
    slots = PoolOptions.read({"devices": [5, 7], "jobs_per_device": 2}).slots()
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in slots] == ["5", "5", "7", "7"]
    every = PoolOptions.read({"gpus_per_job": 3}).slots()
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in every] == ["2,5,7"]
    with pytest.raises(ConfigError, match="GPU 3, which .* visible ones are 2, 5, 7"):
        PoolOptions.read({"devices": [2, 3]}).slots()


def test_a_rebuilt_entry_keeps_the_jobs_own_overrides(tmp_path):
    """The job's overrides are those before the launcher's in its .hydra/overrides.yaml."""
    from athanor.cli.sweep_plugins import job_argv
    from athanor.sweep.manifest import entry_from_folder

    folder = tmp_path / "3_optim.lr=0.1"
    argv = job_argv(["optim.lr=0.1", "seed=1"], folder, 2)
    (folder / ".hydra").mkdir(parents=True)
    # Hydra writes the job's task overrides there, not the hydra.* ones (JSON is YAML)
    written = ["resume=x", *[a for a in argv[3:] if not a.startswith("hydra.")]]
    (folder / ".hydra" / "overrides.yaml").write_text(json.dumps(written))
    (folder / "summary.json").write_text(json.dumps({"status": "running"}))
    entry = entry_from_folder(folder)
    assert (entry.index, entry.status) == (3, "interrupted")
    assert entry.overrides == ["resume=x", "optim.lr=0.1", "seed=1"]
    assert entry_from_folder(folder.with_name("3_optim.lr=0.1.failed-1")) is None


def test_a_manifest_that_cannot_be_set_aside_is_one_paragraph(tmp_path, monkeypatch):
    """A damaged manifest on a read-only sweep folder (root ignores chmod: the rename is made to
    fail) is refused naming the file and the way on, with nothing changed."""
    import errno

    from athanor.errors import ConfigError
    from athanor.sweep.manifest import Manifest

    (tmp_path / "sweep_manifest.json").write_text('{"jobs": {')

    def read_only(self, target):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(Path, "rename", read_only)
    with pytest.raises(ConfigError, match="cannot be read .* nor set aside .*Read-only file sys"):
        Manifest(tmp_path)
    assert (tmp_path / "sweep_manifest.json").read_text() == '{"jobs": {'
