"""The DDP launcher's error mapping (launch/workers.py): a worker's failure becomes an outcome file
and an exit code (_outcome), and the parent raises the first real one again (_root_cause), so
`train distributed.nproc_per_node=N` ends like a single-process run: the same kind of error, the
same message, the same exit code, and summary.json says which rank failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from athanor.cli.outcome import run_task
from athanor.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    ConfigError,
    InterruptedRun,
    NonFiniteError,
    PeerFailed,
    UserCodeError,
)
from athanor.launch.workers import _outcome, _root_cause
from athanor.metrics.monitor import Monitor
from athanor.record.checkpoints import CheckpointSaveError
from athanor.record.folder import RunDir
from athanor.record.record import MetricsLog, RunRecord


def worker_failure(err: BaseException, rank: int, scratch: Path) -> int:
    """What launch.worker does with an exception: raise it for real, write its outcome file,
    return the worker's exit code."""
    try:
        raise err
    except BaseException as caught:  # noqa: BLE001 - as the worker does
        outcome, code = _outcome(caught, rank)
    (scratch / f"outcome-{rank}.json").write_text(json.dumps(outcome))
    return code


class Failure:
    def __init__(self, exitcode: int):
        self.exitcode = exitcode


class Failed:
    """torch's ChildFailedError, as far as _root_cause reads it."""

    def __init__(self, rank: int, exitcode: int):
        self.first = (rank, Failure(exitcode))

    def get_first_failure(self):
        return self.first


@pytest.fixture
def dirs(tmp_path):
    scratch, run = tmp_path / "scratch", tmp_path / "run"
    scratch.mkdir()
    run.mkdir()
    RunRecord(RunDir(run), MetricsLog(Monitor("val/acc", "max"))).start()  # a running run
    return scratch, run


@pytest.mark.parametrize(
    "err, kind, code",
    [
        (ConfigError("optim.lr=-1 must be > 0"), ConfigError, EXIT_USER_ERROR),
        (NonFiniteError("loss is nan at step 7"), NonFiniteError, EXIT_FAILED),
        (InterruptedRun("stopped by a signal at step 7"), InterruptedRun, EXIT_INTERRUPTED),
    ],
    ids=["config", "nonfinite", "interrupted"],
)
def test_a_known_error_on_one_rank_is_raised_again_with_its_kind_message_and_code(
    dirs, err, kind, code
):
    scratch, run = dirs
    assert worker_failure(err, 1, scratch) == code
    # rank 0 stopped only because rank 1 did: that is not the cause
    worker_failure(PeerFailed("another rank failed"), 0, scratch)
    raised = _root_cause(scratch, Failed(1, code), run)
    assert type(raised) is kind and str(raised) == str(err)
    summary = RunDir(run).read_summary()
    assert summary["error"] == f"rank 1: {err}"
    assert summary["status"] == ("interrupted" if kind is InterruptedRun else "failed")


def test_an_error_in_the_users_code_travels_home_with_their_traceback(dirs):
    """An error raised in the user's own code (here: this file, which is not athanor's) is
    framed in the worker as a one-process run frames it: the function named on the first line,
    their traceback after it, and the first line alone in summary.json."""
    scratch, run = dirs

    def users_forward():
        return {}["logits"]

    try:
        users_forward()
    except KeyError as err:
        outcome, code = _outcome(err, 1)
    (scratch / "outcome-1.json").write_text(json.dumps(outcome))
    assert code == EXIT_FAILED and outcome["kind"] == "UserCodeError"
    raised = _root_cause(scratch, Failed(1, code), run)
    first, *trace = str(raised).splitlines()
    assert isinstance(raised, UserCodeError) and "users_forward (" in first
    assert first.endswith("raised KeyError: 'logits'")
    assert any("in users_forward" in line for line in trace), str(raised)
    assert RunDir(run).read_summary()["error"] == f"rank 1: {first}"


def test_a_bug_keeps_the_workers_traceback(dirs):
    """An error with no frame in the user's code is athanor's bug: no paragraph, the parent
    shows the worker's traceback."""
    scratch, run = dirs
    outcome, code = _outcome(KeyError("logits"), 1)  # raised nowhere near the user's code
    (scratch / "outcome-1.json").write_text(json.dumps(outcome))
    assert code == EXIT_FAILED and outcome["kind"] == "Exception"
    raised = _root_cause(scratch, Failed(1, code), run)
    assert isinstance(raised, RuntimeError) and "rank 1 failed" in str(raised)
    assert RunDir(run).read_summary()["error"] == "rank 1: KeyError: 'logits'"


def test_the_lowest_failing_rank_is_the_cause(dirs):
    scratch, run = dirs
    worker_failure(NonFiniteError("rank 3's loss is nan"), 3, scratch)
    worker_failure(ConfigError("rank 2's data.root is missing"), 2, scratch)
    raised = _root_cause(scratch, Failed(2, EXIT_USER_ERROR), run)
    assert isinstance(raised, ConfigError) and "rank 2's" in str(raised)


def test_a_quiet_exit_and_a_kill_without_a_word_use_the_launchers_exit_code(dirs):
    scratch, run = dirs
    assert worker_failure(SystemExit(3), 1, scratch) == 3  # a rank leaving quietly: not a cause
    assert worker_failure(KeyboardInterrupt(), 0, scratch) == EXIT_INTERRUPTED
    (scratch / "outcome-0.json").unlink()  # rank 0 killed by the OOM killer writes nothing
    raised = _root_cause(scratch, Failed(0, -9), run)
    assert isinstance(raised, PeerFailed)  # an expected kind: one paragraph, no traceback
    assert str(raised).startswith(
        "Worker rank 0 died with exit code -9 (SIGKILL: killed from outside, e.g. kill -9 or the "
        "out-of-memory killer); the other workers were stopped."
    )
    assert f"resume with `train resume={run}`" in str(raised)  # a command to paste
    assert RunDir(run).read_summary()["error"].startswith("rank 0 died with exit code -9 (SIGKILL")


def test_the_parent_exits_with_the_code_a_single_process_run_would(dirs):
    """The raised error goes through the CLI's own table: a worker's ConfigError exits 2."""
    scratch, run = dirs
    worker_failure(ConfigError("data.root='nowhere' does not exist"), 1, scratch)

    def launched(config, run_dir):
        raise _root_cause(scratch, Failed(1, EXIT_USER_ERROR), run_dir)

    with pytest.raises(SystemExit) as stopped:
        run_task(launched, {}, run)
    assert stopped.value.code == EXIT_USER_ERROR


def test_a_failed_checkpoint_save_on_a_rank_is_raised_again_as_itself(dirs):
    scratch, run = dirs
    worker_failure(CheckpointSaveError("could not write last.pt: disk full"), 0, scratch)
    raised = _root_cause(scratch, Failed(0, EXIT_FAILED), run)
    assert isinstance(raised, CheckpointSaveError) and str(raised).endswith("disk full")


def test_a_gpu_index_beyond_the_visible_ones_is_named(monkeypatch):
    """Two processes per node in a slot that holds one GPU (fake device counts: only the
    assignment is checked): local rank 1 would use cuda:1 of 1 visible."""
    import torch

    from athanor.distributed import Dist, check_visible

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    check_visible(torch.device("cuda", 0), Dist(rank=0, local_rank=0, world=2), visible=1)
    with pytest.raises(ConfigError) as refused:
        check_visible(torch.device("cuda", 1), Dist(rank=1, local_rank=1, world=2), visible=1)
    said = str(refused.value)
    assert said.startswith("rank 1 (local rank 1) would train on cuda:1, but it sees 1 GPU(s)")
    assert "CUDA_VISIBLE_DEVICES=3" in said and "distributed.nproc_per_node" in said
