"""`resume=`: continuing a run in its own folder, allowed and refused config changes, bad input
(nothing overwritten), and preemption by real signals to a real process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from athanor.record.folder import RunDir
from conftest import ROOT, cli
from test_checkpoint import TINY
from test_train_cli import read_scalars


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A completed 2-epoch run in <cwd>/run."""
    cwd = tmp_path_factory.mktemp("resume")
    cli("athanor.train", *TINY, "trainer.epochs=2", "hydra.run.dir=run", cwd=cwd)
    return cwd / "run"


def files(run: Path) -> dict[str, bytes]:
    """Everything a rejected resume must leave alone (the log may gain the error line)."""
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name != "train.log" and "resume-" not in str(p)
    }


def test_bad_resume_targets_are_one_paragraph_errors_and_change_nothing(finished, tmp_path):
    before = files(finished)
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    # a last.pt cut short: torch's reason, in one whole sentence without its paragraph of advice
    (tmp_path / "cut.pt").write_bytes((finished / "checkpoints" / "last.pt").read_bytes()[:999])
    cases = {
        str(tmp_path / "missing"): "does not exist",
        str(tmp_path / "notes.pt"): "damaged or not a torch checkpoint",
        str(tmp_path / "cut.pt"): "(RuntimeError: PytorchStreamReader failed reading zip archive: "
        "failed finding central directory).",
    }
    for target, message in cases.items():
        result = cli("athanor.train", *TINY, f"resume={target}", cwd=tmp_path, expect=2)
        assert message in " ".join(result.stderr.split()) and "Traceback" not in result.stderr
    # another model: the differing keys are listed
    result = cli(
        "athanor.train", *TINY, "model.hidden=[16]", f"resume={finished}", cwd=tmp_path, expect=2
    )
    assert "model.hidden: [8] in the checkpoint, [16] now" in " ".join(result.stderr.split())
    cnn = [a for a in TINY if not a.startswith("model")] + ["model=simple_cnn", "model.width=8"]
    result = cli("athanor.train", *cnn, f"resume={finished}", cwd=tmp_path, expect=2)
    assert "model.name: 'mlp' in the checkpoint, 'simple_cnn' now" in " ".join(
        result.stderr.split()
    )
    assert files(finished) == before


def test_resume_with_more_epochs_continues_in_the_same_folder(finished, tmp_path):
    work = tmp_path / "run"
    shutil.copytree(finished, work)
    result = cli("athanor.train", *TINY, "trainer.epochs=3", f"resume={work}", cwd=tmp_path)
    assert "trainer.epochs: 2 -> 3" in result.output
    summary = RunDir(work).read_summary()
    assert summary["status"] == "completed" and summary["epochs"] == 3 and summary["steps"] == 24
    assert summary["resumes"][0]["step"] == 16
    assert summary["resumes"][0]["changes"] == ["trainer.epochs: 2 -> 3"]
    # the run's time is the sum of its two processes' segments, each with its steps
    first, second = summary["segments"]
    assert (first["start_step"], first["end_step"], second["start_step"]) == (0, 16, 16)
    assert second["end_step"] == 24 and first["seconds"] > 0 and second["seconds"] > 0
    assert summary["wall_time_s"] == pytest.approx(first["seconds"] + second["seconds"], abs=0.02)
    assert [m["epoch"] for m in RunDir(work).read_metrics()] == [1, 2, 3]
    steps = [e.step for e in read_scalars(work / "tb")["train/loss"]]
    assert steps == list(range(1, 25))
    assert (work / ".hydra" / "config.yaml").read_bytes() == (
        finished / ".hydra" / "config.yaml"
    ).read_bytes()  # the original config stays; the resume's is under .hydra/resume-<time>/
    assert list((work / ".hydra").glob("resume-*/overrides.yaml"))
    assert not list(tmp_path.glob("outputs"))  # no new run folder


def test_a_resume_that_would_train_nothing_or_rewind_is_refused_with_the_commands(
    finished, tmp_path
):
    before = files(finished)
    # the run's own trainer.epochs=2 is done: nothing to train
    result = cli("athanor.train", *TINY, f"resume={finished}", cwd=tmp_path, expect=2)
    text = " ".join(result.stderr.split())
    assert "Nothing to resume" in text and "Traceback" not in result.stderr
    assert "it is at epoch 2, and trainer.epochs=2" in text
    assert f"`train resume={finished} trainer.epochs=12`" in text
    # the step-8 file of a run that went on to step 16: a rewind
    step8 = finished / "checkpoints" / "step_000000008.pt"
    result = cli("athanor.train", *TINY, f"resume={step8}", cwd=tmp_path, expect=2)
    text = " ".join(result.stderr.split())
    assert "would rewind its run: it is step 8, and the run went on to step 16" in text
    assert f"`train resume={step8} rewind=true`" in text and f"`train resume={finished}`" in text
    assert files(finished) == before
    # rewind=true: the newer checkpoint goes, the run continues from step 8 to its end
    work = tmp_path / "work"
    shutil.copytree(finished, work)
    result = cli(
        "athanor.train",
        *TINY,
        f"resume={work}/checkpoints/step_000000008.pt",
        "rewind=true",
        cwd=tmp_path,
    )
    assert "step_000000016.pt (newer than step_000000008.pt) deleted" in result.output
    summary = RunDir(work).read_summary()
    assert summary["status"] == "completed" and summary["steps"] == 16
    assert summary["resumes"][-1]["step"] == 8
    assert [m["epoch"] for m in RunDir(work).read_metrics()] == [1, 2]


def start(cwd: Path, *overrides: str) -> tuple[subprocess.Popen, Path]:
    log = cwd / "output.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "athanor.train", *overrides],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        preexec_fn=like_a_terminal,  # SIGINT must reach the run also when pytest runs in the background
    )
    return proc, log


def wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, f"the run ended early:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{text!r} never appeared"
        time.sleep(0.02)


LONG = (*TINY, "trainer.epochs=1000", "hydra.run.dir=run")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT])
def test_signal_finishes_the_step_saves_and_exits_130(tmp_path, sig):
    proc, log = start(tmp_path, *LONG)
    wait_for(log, "step 20/", proc)
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == 130
    text = log.read_text()
    assert f"{sig.name} received" in text and "resume with `train resume=" in text
    run = RunDir(tmp_path / "run")
    summary = run.read_summary()
    assert summary["status"] == "interrupted" and summary["stop_reason"] == "interrupted"
    last = torch.load(run.checkpoints / "last.pt", weights_only=True)
    progress = last["state"]["progress"]
    assert progress["step"] == summary["steps"] >= 20  # the checkpoint is of the last step done
    assert progress["step"] % 8 == progress["batch"] % 8  # mid-epoch position kept
    tb = read_scalars(run.tensorboard)  # the writer was closed: every logged step is on disk
    assert [e.step for e in tb["train/loss"]][-1] == progress["step"]


def like_a_terminal() -> None:
    """preexec_fn: the child starts with SIGINT at its default, as under an interactive shell.
    A background job (`pytest &`, nohup) inherits SIGINT *ignored*, and Python then installs no
    KeyboardInterrupt handler, so a test must not rely on the one it inherited."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


SECOND_CTRL_C = """
import os, signal, time
from athanor.process.signals import StopSignals

assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
with StopSignals() as signals:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # Python runs the handler between bytecodes
    assert signals.requested, "the first Ctrl-C only asks the loop to stop"
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        raise SystemExit("the second Ctrl-C did not interrupt")
    except KeyboardInterrupt:
        pass
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "handler not restored"
print("ok")
"""


def test_second_ctrl_c_exits_at_once(tmp_path):
    """Real SIGINTs through the real handler, in a child that has a terminal's SIGINT setup."""
    proc = subprocess.run(
        [sys.executable, "-c", SECOND_CTRL_C],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])},
        preexec_fn=like_a_terminal,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


# what submitit does in a SLURM job: a SIGUSR1 handler that requeues the job and exits
REQUEUE_WRAPPER = """
import signal, sys
def requeue(signum, frame):
    open("requeued", "w").write(signal.Signals(signum).name)
    sys.exit(3)
signal.signal(signal.SIGUSR1, requeue)
from athanor.cli.train import train
sys.argv = ["train", *sys.argv[1:]]
train()
"""


@pytest.mark.slow
def test_sigusr1_reaches_the_handler_it_replaced_after_the_checkpoint(tmp_path):
    log = tmp_path / "output.txt"
    proc = subprocess.Popen(
        [sys.executable, "-c", REQUEUE_WRAPPER, *LONG],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    wait_for(log, "step 20/", proc)
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=120) == 3, log.read_text()[-3000:]  # the previous handler's exit
    assert (tmp_path / "requeued").read_text() == "SIGUSR1"
    run = RunDir(tmp_path / "run")
    assert run.read_summary()["status"] == "interrupted"  # written before the handover
    last = torch.load(run.checkpoints / "last.pt", weights_only=True)
    assert last["state"]["progress"]["step"] == run.read_summary()["steps"] >= 20


def test_sigint_is_never_forwarded_and_sigterm_reaches_a_python_handler():
    from athanor.process.signals import StopSignals

    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        signals = StopSignals()
        with signals:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        assert signals.requested and seen == []  # ours ran, not the replaced one
        signals.forward()
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
    signals = StopSignals()
    with signals:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    signals.forward()  # default_int_handler would raise KeyboardInterrupt: not called
