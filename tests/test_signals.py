"""Signals, however many, end a run cleanly: real processes, real signals, at the phase the log
names (start-up, a step, the final save, a second Ctrl-C inside the interrupt's save, the DDP
launcher). Every check loads the checkpoints with weights_only=True, parses summary.json strictly
and finds no temp file."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from athanor.process.signals import StopSignals
from conftest import ROOT
from test_checkpoint import TINY

# a checkpoint of ~75 MB (weights and two Adam moments): its save lasts long enough for a storm
BIG = (*TINY, "model.hidden=[2048]")
STORM = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def start(cwd: Path, *overrides: str, **popen: object) -> tuple[subprocess.Popen, Path]:
    """`python -m athanor.train` started with SIGINT *ignored*, as a background shell job (and
    `pytest &`) hands it over: the run installs its own handlers, it never relies on inherited
    ones. ``popen``: more Popen arguments (a session of its own, to signal its whole group)."""
    log = cwd / "output.txt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "athanor.train", *overrides, "hydra.run.dir=run"],
        cwd=cwd,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        **popen,
    )
    return proc, log


def wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> str:
    """The log once the regular expression ``text`` matches it (polled every 2 ms: the phase
    is still running)."""
    deadline = time.monotonic() + timeout
    while not re.search(text, seen := log.read_text()):
        assert proc.poll() is None, f"the run ended early:\n{seen[-3000:]}"
        assert time.monotonic() < deadline, f"{text!r} never appeared:\n{seen[-3000:]}"
        time.sleep(0.002)
    return seen


def storm(proc: subprocess.Popen, count: int = 20, gap_s: float = 0.005) -> None:
    """``count`` signals ``gap_s`` apart (0: until the process ends), SIGTERM / SIGINT / SIGUSR1
    in turn."""
    for i in itertools.count():
        if proc.poll() is not None or (count and i == count):
            return
        proc.send_signal(STORM[i % len(STORM)])
        time.sleep(gap_s)


def strict_json(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"{path} holds {name}: not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def assert_ended_interrupted(cwd: Path, proc: subprocess.Popen, log: Path) -> dict:
    """Exit 130, summary `interrupted`, every checkpoint loadable, no temp file; -> summary."""
    code = proc.wait(timeout=180)
    text = log.read_text()
    assert code == 130, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    run = cwd / "run"
    summary = strict_json(run / "summary.json")
    assert summary["status"] == "interrupted" and summary["stop_reason"] == "interrupted"
    assert not list(run.rglob("*.tmp")), "a temp file was left"
    files = sorted((run / "checkpoints").glob("*.pt"))
    assert files, "no checkpoint"
    for path in files:
        state = torch.load(path, weights_only=True)
        assert state["format_version"] == 2 and "model" in state["state"], path
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert last["state"]["progress"]["step"] == summary["steps"], "last.pt is not the last step"
    return summary


@pytest.mark.slow  # a real training process (~10 s idle)
def test_a_signal_storm_during_the_final_save_ends_interrupted(tmp_path):
    """From the validation after the last step to the exit (the final save, the figures, the
    summary): a signal every 5 ms. No checkpoint is on disk yet, so even the storm's SIGINTs
    never cut the save."""
    proc, log = start(tmp_path, *BIG, "trainer.epochs=1")
    wait_for(log, "epoch 1/1 done", proc)  # validated: the final save is next, at once
    storm(proc, count=0)
    summary = assert_ended_interrupted(tmp_path, proc, log)
    text = log.read_text()
    assert "received while a checkpoint is being written" in text, "the storm missed the save"
    # after the save, the storm's later SIGINTs may cut the figures (a checkpoint is on disk)
    assert summary["steps"] == 8 and "step 8" in summary["error"]
    assert text.count("received: finishing the current step") == 1, "one stop request"


@pytest.mark.slow  # a real training process (~10 s idle)
def test_a_signal_storm_during_start_up_and_training_ends_interrupted(tmp_path):
    proc, log = start(tmp_path, *TINY, "trainer.epochs=1000")
    wait_for(log, "data fake:", proc)  # start-up: the components are being built
    storm(proc, count=10, gap_s=0.02)
    summary = assert_ended_interrupted(tmp_path, proc, log)
    text = log.read_text()
    assert text.index("received: finishing") < text.index("first optimizer step"), "not start-up"
    assert 1 <= summary["steps"] < 100  # the run started, took its first step, and saved it


@pytest.mark.slow  # a real training process (~10 s idle)
def test_a_second_ctrl_c_during_the_interrupt_save_finishes_that_save(tmp_path):
    """Decided: the save in progress is finished (the file is complete), then the run exits at
    once; last.pt is the interrupt's checkpoint. SIGUSR1 pings (more stop requests) find the
    save: the run logs the first signal it takes inside one."""
    proc, log = start(tmp_path, *BIG, "trainer.epochs=1000")
    wait_for(log, "step 12/", proc)
    proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 60
    while "received while a checkpoint is being written" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    summary = assert_ended_interrupted(tmp_path, proc, log)
    text = log.read_text()
    assert "the checkpoint being written is finished, then exit" in text, text[-2000:]
    assert "Run interrupted at once (second Ctrl-C)" in text
    assert summary["steps"] >= 12 and summary["error"].startswith("second Ctrl-C")


@pytest.mark.slow  # a real training process with two DataLoader workers (~15 s idle)
def test_ctrl_c_to_the_whole_process_group_with_loader_workers_ends_interrupted(tmp_path):
    """A terminal's Ctrl-C reaches every process of its group, the DataLoader workers too (and
    SLURM's SIGUSR1 every process of the step): the workers leave it to the run, which saves."""
    overrides = (*TINY, "trainer.epochs=1000", "data.loader=torch", "data.num_workers=2")
    proc, log = start(tmp_path, *overrides, start_new_session=True)
    wait_for(log, "step 12/", proc)
    os.killpg(proc.pid, signal.SIGUSR1)
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    summary = assert_ended_interrupted(tmp_path, proc, log)
    assert "exited unexpectedly" not in log.read_text() and summary["steps"] >= 12


@pytest.mark.slow
def test_sigterm_to_the_ddp_launcher_exits_130_with_the_workers_checkpoint(tmp_path):
    """`train distributed.nproc_per_node=2`: the launcher hands the SIGTERM storm to its workers,
    which stop together and save; `[ $? -eq 130 ] && scontrol requeue` then requeues."""
    proc, log = start(tmp_path, *TINY, "trainer.epochs=1000", "distributed.nproc_per_node=2")
    wait_for(log, "step 12/", proc, timeout=240)
    storm(proc, count=10, gap_s=0.005)
    summary = assert_ended_interrupted(tmp_path, proc, log)
    assert summary["steps"] >= 12 and summary["error"].startswith("rank ")
    assert "resume with `train resume=" in log.read_text()


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.02)  # Python runs the handler between bytecodes


def test_a_second_ctrl_c_cuts_only_where_the_run_allows_it():
    """Real SIGINTs through the real handler: never during start-up or the close, not before a
    checkpoint is on disk, never inside a save (raised once it is complete), and only once."""
    on_disk: list[int] = []
    with StopSignals(escalate=False) as signals:
        ctrl_c()
        ctrl_c()  # start-up: stopping is already the quickest way
        assert signals.requested and signals.sigints == 2
        with signals.escalating(when=lambda: bool(on_disk)):
            ctrl_c()  # no checkpoint yet: the run finishes the step and saves first
            on_disk.append(1)
            finished = False
            with pytest.raises(KeyboardInterrupt), signals.shielded():
                ctrl_c()
                finished = True  # the save went on to its end
            assert finished
            ctrl_c()  # raised once: the unwinding (summary, close) is never cut
        ctrl_c()
    assert signals.sigints == 6


def test_everything_under_the_command_shares_its_handler():
    signals = StopSignals(escalate=False)
    with signals:
        with StopSignals.watch() as inner:
            assert inner is signals
        assert signal.getsignal(signal.SIGTERM) == signals._handle
    with StopSignals.watch() as alone:  # a run started from Python: installed for its duration
        assert alone is not signals and signal.getsignal(signal.SIGTERM) == alone._handle
    assert signal.getsignal(signal.SIGTERM) is not alone._handle


class _SignalDispositions(torch.utils.data.Dataset):
    """Each item: whether SIGINT and SIGUSR1 are ignored in the process that reads it."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> torch.Tensor:
        ignored = [signal.getsignal(s) == signal.SIG_IGN for s in (signal.SIGINT, signal.SIGUSR1)]
        return torch.tensor(ignored)


def test_loader_workers_ignore_ctrl_c_and_sigusr1_whatever_the_start_method():
    """A spawned (or forkserver: Python 3.14's default) worker starts with default handlers, so
    a terminal's Ctrl-C would end its loop; the run's worker_init_fn leaves the stop to the run."""
    from torch.utils.data import DataLoader

    from athanor.data.loaders import workers_leave_stops_to_the_run

    def read(**init) -> list[bool]:
        loader = DataLoader(
            _SignalDispositions(), num_workers=1, multiprocessing_context="spawn", **init
        )
        return next(iter(loader))[0].tolist()

    assert read() == [False, False]  # what the loader would do on its own
    assert read(worker_init_fn=workers_leave_stops_to_the_run) == [True, True]
