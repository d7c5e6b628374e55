"""DDP on CPU (gloo) with real processes: `torchrun -m athanor.train` and
`train distributed.nproc_per_node=2` (also inside a sweep) give one run folder, exact metrics and
the same weights as the 1-process run; a failing rank ends the group at once, reported once."""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import CliResult, cli
from test_train_cli import read_scalars

pytestmark = pytest.mark.slow

# digits: 1438 train samples (22 full global batches of 64), 359 val samples: not divisible by 2
ARGS = (
    "model=mlp",
    "augment=none",
    "trainer.epochs=2",
    "trainer.log_every=5",
    "logger.progress=plain",
)
SCRATCH_GLOB = "athanor-scratch-*"


def run_env(tmp: Path, *extra_paths: Path) -> dict[str, str]:
    """A private TMPDIR (scratch folders are checked there) and PYTHONPATH for the children."""
    tmpdir = tmp / "tmp"
    tmpdir.mkdir(exist_ok=True)
    paths = [str(p) for p in extra_paths]
    if os.environ.get("PYTHONPATH"):
        paths += [os.path.abspath(p) for p in os.environ["PYTHONPATH"].split(os.pathsep)]
    return {"TMPDIR": str(tmpdir), "PYTHONPATH": os.pathsep.join(paths)}


def torchrun(*args: str, cwd: Path, env: dict, expect: int | None = 0) -> CliResult:
    return cli(
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",
        "-m",
        "athanor.train",
        *args,
        cwd=cwd,
        env=env,
        expect=expect,
        timeout=300,
    )


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["state"]["model"]


def assert_same_run(ddp: CliResult, ddp_dir: Path, single: CliResult, runs: int = 1) -> None:
    """Equal weights, identical validation metrics, and one folder written by rank 0 alone
    (``runs``: the DDP runs in ``ddp``'s output, each logged once)."""
    a, b = weights(single.run_dir), weights(ddp_dir)
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-6), key
    single_metrics = single.metrics()
    lines = (ddp_dir / "metrics.jsonl").read_text().splitlines()
    ddp_metrics = [json.loads(line) for line in lines]
    assert len(ddp_metrics) == len(single_metrics) == 2
    for s, d in zip(single_metrics, ddp_metrics, strict=True):
        # 359 samples over 2 ranks: a padded duplicate would change the accuracy
        assert d["val/acc"] == pytest.approx(s["val/acc"], abs=1e-9)
        assert d["val/loss"] == pytest.approx(s["val/loss"], rel=1e-5)
    log = (ddp_dir / "train.log").read_text()
    assert log.count("epoch 2/2 done") == 1
    assert ddp.output.count("data digits:") == runs, "rank 1 must print nothing but errors"
    # events.out.tfevents.<time>.<host>.<pid>.<n>: every TensorBoard file comes from one process
    events = list((ddp_dir / "tb").glob("events.out.tfevents.*"))
    assert events and len({e.name.split(".")[-2] for e in events}) == 1
    assert not list((ddp.cwd / "tmp").glob(SCRATCH_GLOB)), "scratch folders must be removed"


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> CliResult:
    cwd = tmp_path_factory.mktemp("single")
    return cli("athanor.train", *ARGS, cwd=cwd, env=run_env(cwd))


def test_torchrun_matches_the_single_process_run(single, tmp_path):
    result = torchrun(*ARGS, cwd=tmp_path, env=run_env(tmp_path))
    run_dirs = result.run_dirs()
    assert len(run_dirs) == 1 and len(list((tmp_path / "outputs").glob("*/*"))) == 1
    assert result.summary()["status"] == "completed"
    assert_same_run(result, run_dirs[0], single)


def test_sweep_of_ddp_runs_launched_by_train_itself(single, tmp_path):
    """`train -m distributed.nproc_per_node=2 optim.lr=a,b`: each job launches its own worker
    group into its own folder; job 0 is the single-process run again, train loss included."""
    result = cli(
        "athanor.train",
        "-m",
        *ARGS,
        "distributed.nproc_per_node=2",
        "optim.lr=1.0e-3,2.0e-3",
        cwd=tmp_path,
        env=run_env(tmp_path),
        timeout=300,
    )
    jobs = sorted(p for p in (tmp_path / "outputs" / "multirun").glob("*/*/*") if p.is_dir())
    assert [j.name.split("_")[0] for j in jobs] == ["0", "1"]
    assert "optim.lr=0.001" in jobs[0].name and "optim.lr=0.002" in jobs[1].name
    # each job is a process of the sweep's pool, its output in its folder's console.log
    consoles = "".join((j / "console.log").read_text() for j in jobs)
    jobs_output = dataclasses.replace(result, stdout=consoles, stderr="")
    assert consoles.count("launching 2 worker processes") == 2
    assert_same_run(jobs_output, jobs[0], single, runs=2)
    # the logged train loss is the global mean over both ranks, not rank 0's half
    one = [e.value for e in read_scalars(single.run_dir / "tb")["train/loss"]]
    two = [e.value for e in read_scalars(jobs[0] / "tb")["train/loss"]]
    assert two == pytest.approx(one, rel=1e-4)
    assert weights(jobs[1])["1.weight"].ne(weights(jobs[0])["1.weight"]).any()


INJECT = textwrap.dedent(
    """
    # test-only: rank 1 raises at its 3rd optimizer step (loaded by every process of the test)
    import os
    from athanor.engine import step

    _step = step.Stepper.step

    def failing_step(self, micro, n, **kwargs):
        if os.environ.get("RANK") == "1" and n == 2:
            raise RuntimeError("injected failure on rank 1")
        return _step(self, micro, n, **kwargs)

    step.Stepper.step = failing_step
    """
)


@pytest.mark.parametrize("launcher", ["nproc_per_node", "torchrun"])
def test_a_failing_rank_ends_the_group_promptly_with_one_message(tmp_path, launcher):
    plugin = tmp_path / "inject"
    plugin.mkdir()
    (plugin / "sitecustomize.py").write_text(INJECT)
    env = run_env(tmp_path, plugin)
    # a collective timeout far above the subprocess timeout: ending in time proves the survivor
    # noticed its peer's exit instead of waiting for the timeout
    args = (*ARGS, "distributed.timeout_s=3600", "trainer.sync_bn=true")
    if launcher == "torchrun":
        result = torchrun(*args, cwd=tmp_path, env=env, expect=1)
    else:
        result = cli(
            "athanor.train",
            *args,
            "distributed.nproc_per_node=2",
            cwd=tmp_path,
            env=env,
            expect=1,
            timeout=300,
        )
    # the injected step is code outside athanor (the user's, as far as it can tell): under both
    # launchers it is framed as in one process, a first line naming it, then its traceback once
    assert result.output.count("Error in your code: failing_step") == 1, result.output[-3000:]
    raised = 'raise RuntimeError("injected failure on rank 1")'
    assert result.output.count(raised) == 1, result.output[-3000:]  # one traceback
    summary = result.summary()
    assert summary["status"] == "failed" and summary["steps"] < 22
    if launcher == "nproc_per_node":
        assert summary["error"].startswith("error in your code: failing_step (")
        assert summary["error"].endswith("raised RuntimeError: injected failure on rank 1")
    assert result.output.count("sync_bn=true needs CUDA") == 1  # said once, by rank 0
    assert len(result.run_dirs()) == 1
    assert not list((tmp_path / "tmp").glob(SCRATCH_GLOB))


@pytest.mark.parametrize("launcher", ["nproc_per_node", "torchrun"])
def test_a_config_error_is_reported_once_not_per_rank(tmp_path, launcher):
    args = ("optim.lr=-0.1",)  # found while building the optimizer, on every rank alike
    if launcher == "torchrun":
        result = torchrun(*args, cwd=tmp_path, env=run_env(tmp_path), expect=None)
        assert result.returncode != 0
    else:
        result = cli("athanor.train", *args, "distributed.nproc_per_node=2", cwd=tmp_path, expect=2)
    assert result.output.count("Config error") == 1, result.output[-3000:]
    assert "learning rate" in result.stderr


KILL = textwrap.dedent(
    """
    # test-only: rank 1 is killed (SIGKILL) at its 8th optimizer step, once (no flag file yet)
    import os, signal, time
    from pathlib import Path
    from athanor.engine import step

    _step = step.Stepper.step
    FLAG = Path(os.environ["ATHANOR_TEST_KILLED_FLAG"])

    def killed_step(self, micro, n, **kwargs):
        if os.environ.get("RANK") == "1" and n == 7 and not FLAG.exists():
            FLAG.write_text(str(time.time()))  # when: the group must end promptly after it
            os.kill(os.getpid(), signal.SIGKILL)
        return _step(self, micro, n, **kwargs)

    step.Stepper.step = killed_step
    """
)


def test_a_killed_ddp_run_resumes_to_the_uninterrupted_result(single, tmp_path):
    """kill -9 of one worker mid-epoch, then `resume=<run folder>` with 2 workers again: the
    weights end where the uninterrupted 1-process run's do."""
    plugin = tmp_path / "inject"
    plugin.mkdir()
    (plugin / "sitecustomize.py").write_text(KILL)
    env = {**run_env(tmp_path, plugin), "ATHANOR_TEST_KILLED_FLAG": str(tmp_path / "killed")}
    args = (*ARGS, "distributed.nproc_per_node=2", "checkpoint.every_steps=5")
    killed = cli("athanor.train", *args, cwd=tmp_path, env=env, expect=1, timeout=300)
    ended_after_s = time.time() - float((tmp_path / "killed").read_text())
    # one paragraph naming the rank, no traceback, and no wait for a collective's timeout
    assert "Stopped: Worker rank 1 died with exit code -9 (SIGKILL" in killed.stderr
    assert "Traceback" not in killed.output, killed.output[-3000:]
    assert ended_after_s < 60, f"the group took {ended_after_s:.0f} s to end"
    run_dir = killed.run_dir
    assert killed.summary()["status"] == "failed"
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["state"]["progress"]["step"] == 5

    resumed = cli("athanor.train", *args, f"resume={run_dir}", cwd=tmp_path, env=env, timeout=300)
    assert resumed.run_dirs() == [run_dir]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 44
    a, b = weights(single.run_dir), weights(run_dir)
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-6), key


def test_each_rank_resumes_its_own_random_stream(tmp_path):
    """Dropout draws from each rank's own generator (seeded seed + rank): a 2-process run cut at
    step 7 and resumed ends with the straight 2-process run's weights, so rank 1 continued its
    own stream and not rank 0's (the checkpoint holds every rank's states)."""
    args = (*ARGS, "model.dropout=0.5", "distributed.nproc_per_node=2", "checkpoint.every_steps=7")
    cli("athanor.train", *args, "hydra.run.dir=straight", cwd=tmp_path, timeout=300)
    cut = ("trainer.stop_at_step=7", "hydra.run.dir=split")
    cli("athanor.train", *args, *cut, cwd=tmp_path, timeout=300)
    saved = torch.load(tmp_path / "split/checkpoints/last.pt", weights_only=True)
    assert len(saved["state"]["rng"]["ranks"]) == 2
    # the cut run's own stop_at_step would take one step and stop: said, with the way on
    refused = cli("athanor.train", *args, "resume=split", cwd=tmp_path, expect=2)
    assert "`train resume=split trainer.stop_at_step=null`" in " ".join(refused.stderr.split())
    on = ("resume=split", "trainer.stop_at_step=null")
    cli("athanor.train", *args, *on, cwd=tmp_path, timeout=300)
    assert json.loads((tmp_path / "split/summary.json").read_text())["steps"] == 44
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
