"""A run folder belongs to one run: choosing it has no side effects, claiming it is one act at
run start (an exclusive mkdir and the folder's lock), and a start that is refused (another run's
record, a live lock, a file-system fault) leaves the folder byte for byte as it was."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from athanor.errors import ConfigError
from athanor.record.folder import RunDir, check_folder, claim_new, disk_full_message
from athanor.record.lock import LOCK_NAME, RunLock, check_free
from conftest import FAST, ROOT, cli

QUICK = (*FAST, "trainer.max_steps=3")


def tree_hashes(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (and every folder, as 'dir') with its content's hash."""
    return {
        str(p.relative_to(folder)): "dir"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One finished run (3 steps on digits), shared by the tests that must not change it."""
    cwd = tmp_path_factory.mktemp("finished")
    result = cli("athanor.train", *QUICK, "name=done", cwd=cwd)
    assert result.summary()["status"] == "completed"
    assert not (result.run_dir / LOCK_NAME).exists()  # released when the run ended
    return result.run_dir


def said(result) -> str:
    """What the command printed, with the paragraph's line breaks undone."""
    return " ".join(result.output.split())


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- choosing has no side effects -------------------------------------------------------------


def test_composing_the_config_creates_no_folder(tmp_path, monkeypatch):
    import athanor

    monkeypatch.chdir(tmp_path)
    cfg = athanor.compose(["name=x"])
    assert cfg["name"] == "x"
    assert list(tmp_path.iterdir()) == []  # the resolvers chose a name; nothing was made


def test_cfg_job_creates_no_folder(train, tmp_path):
    train("--cfg", "job")
    assert not (tmp_path / "outputs").exists()


def test_claim_new_takes_the_next_free_name(tmp_path):
    base = tmp_path / "out" / "12-00-00_run"
    first, second, third = claim_new(base), claim_new(base), claim_new(base)
    assert (first, second, third) == (
        base,
        base.with_name("12-00-00_run_1"),
        base.with_name("12-00-00_run_2"),
    )
    assert all(p.is_dir() for p in (first, second, third))


# --- one run, one folder -------------------------------------------------------------------------


def test_a_new_run_in_a_finished_runs_folder_is_refused_and_nothing_changes(train, finished):
    before = tree_hashes(finished)
    result = train(*QUICK, f"hydra.run.dir={finished}", expect=2)
    assert "Traceback" not in result.output
    assert str(finished) in said(result) and "status: completed" in said(result)
    assert f"resume={finished}" in said(result) and "new" in said(result)
    assert tree_hashes(finished) == before  # no .hydra/resume-*, no log line, no lock


def test_a_run_in_an_empty_fixed_folder_is_fine_and_unlocks_at_the_end(train, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    train(*QUICK, f"hydra.run.dir={folder}")
    assert RunDir(folder).read_summary()["status"] == "completed"
    assert not (folder / LOCK_NAME).exists()


def requeue(run: Path) -> tuple[str, str]:
    """The finished run, continued as a requeued job would (resume=auto in its own folder):
    it takes the folder's lock and ends at once (resume=<folder> of a finished run is refused)."""
    return f"hydra.run.dir={run}", "resume=auto"


def test_a_live_lock_refuses_a_resume_naming_the_holder(train, finished):
    """Two `train resume=<folder>` at once: the first holds the lock (stopped with SIGSTOP right
    after it took it, so it is alive and holding), the second is refused naming its PID."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    first = subprocess.Popen(
        [sys.executable, "-m", "athanor.train", *QUICK, *requeue(finished)],
        cwd=finished.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lock = finished / LOCK_NAME
    try:
        deadline = time.monotonic() + 120
        while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert lock.exists(), "the first resume never took the lock"
        first.send_signal(signal.SIGSTOP)
        holder = json.loads(lock.read_text())
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
        assert "resume=" in holder["command"] and holder["started"]
        before = tree_hashes(finished)
        second = train(*QUICK, *requeue(finished), expect=2)
        assert f"PID {first.pid}" in said(second) and "in use" in said(second)
        assert "Traceback" not in second.output
        assert tree_hashes(finished) == before  # the refused resume wrote nothing
    finally:
        first.send_signal(signal.SIGCONT)
        out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out[-3000:]
    assert not lock.exists()  # the holder released it when its run ended


def test_a_stale_lock_is_taken_over_with_one_warning(train, finished):
    pid = dead_pid()
    (finished / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    result = train(*QUICK, *requeue(finished))
    warnings = [line for line in result.output.splitlines() if "stale lock" in line]
    assert len(warnings) == 1 and f"PID {pid}" in warnings[0]
    assert not (finished / LOCK_NAME).exists()


def test_lock_unit_behaviour(tmp_path):
    lock = RunLock.acquire(tmp_path, command="train a")
    with pytest.raises(ConfigError, match=f"PID {os.getpid()}.*train a"):
        RunLock.acquire(tmp_path)
    with pytest.raises(ConfigError, match="in use"):
        check_free(tmp_path)
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()
    check_free(tmp_path)  # free again
    (tmp_path / LOCK_NAME).write_text('{"pid": 1, "host": "another-host"}')
    with pytest.raises(ConfigError, match="another-host"):  # never judged stale from here
        RunLock.acquire(tmp_path)
    (tmp_path / LOCK_NAME).write_text("{torn")  # its writer died mid-write
    RunLock.acquire(tmp_path).release()


# --- file-system faults, before any work ---------------------------------------------------------


def test_a_run_folder_path_that_is_a_file_is_refused(train, tmp_path):
    afile = tmp_path / "results"
    afile.write_text("not a folder")
    for target in (afile, afile / "run1"):
        result = train(*QUICK, f"hydra.run.dir={target}", expect=2)
        assert str(target) in said(result) and "is a file" in said(result)
        assert "Traceback" not in result.output
    assert afile.read_text() == "not a folder"


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_a_place_that_refuses_the_folder_is_named_for_runs_and_sweeps(train, tmp_path, mode):
    """/proc passes the permission check (as root, too) and refuses the mkdir itself: the run
    or sweep folder is named, with the key that moves it, instead of a traceback."""
    target = Path("/proc") / f"athanor-{mode}-{os.getpid()}"
    where = ("-m", f"hydra.sweep.dir={target}") if mode == "sweep" else (f"hydra.run.dir={target}",)
    result = train(where[0], *QUICK, *where[1:], expect=2)
    assert f"The {mode} folder {target} cannot be written" in said(result), result.output
    assert f"hydra.{mode}.dir=<folder>" in said(result) and "Traceback" not in result.output


def test_a_name_too_long_for_the_file_system_is_refused(train, tmp_path):
    target = tmp_path / ("x" * 300)
    result = train(*QUICK, f"hydra.run.dir={target}", expect=2)
    assert "too long" in said(result) and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # (the name cannot exist: the parent stays empty)


def test_unwritable_folder_is_named_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ConfigError, match=f"{tmp_path}.*not writable.*hydra.run.dir"):
        check_folder(tmp_path / "run", resuming=False)
    with pytest.raises(ConfigError, match="cannot be written"):
        claim_new(tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs mounted at tmp_path/fs (root only); unmounted after the test."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"cannot mount a tmpfs here ({err}): needs root and mount")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_read_only_file_system_is_refused_before_any_work(train, tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    for target in (tmpfs / "run", tmpfs):
        result = train(*QUICK, f"hydra.run.dir={target}", expect=2)
        assert str(target) in said(result) and "read-only file system" in said(result)
        assert "Traceback" not in result.output and "step" not in result.stdout


def test_a_full_disk_names_no_space_and_what_was_kept(train, tmpfs):
    """The tmpfs is filled to ~100 kB free: the run starts, its first checkpoint (~0.6 MB with
    the optimizer's moments) does not fit."""
    import shutil

    free = shutil.disk_usage(tmpfs).free
    (tmpfs / "filler").write_bytes(b"\0" * (free - 100 * 1024))
    result = train(*QUICK, f"hydra.run.dir={tmpfs / 'r'}", expect=None)
    assert result.returncode == 1 and "Traceback" not in result.output
    assert "no space left on device" in said(result).lower()
    assert "intact" in said(result) or "kept" in said(result)  # what was kept
    assert not list((tmpfs / "r").rglob("*.tmp"))  # no half-written file left behind


def test_disk_full_message_names_the_kept_checkpoint(tmp_path):
    err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    err.filename = str(tmp_path / "summary.json")
    assert "no checkpoint had been written yet" in disk_full_message(err, tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"x")
    text = disk_full_message(err, tmp_path)
    assert text.startswith("no space left on device while writing") and "last.pt is kept" in text
    assert f"resume={tmp_path}" in text


def test_enospc_while_writing_the_summary_ends_as_disk_full(tmp_path, monkeypatch, capsys):
    from athanor.cli.outcome import run_task
    from athanor.record.folder import write_json_atomic

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    run = RunDir(tmp_path)
    with pytest.raises(SystemExit) as ended:
        run_task(
            lambda config, d: write_json_atomic(run.summary, {"status": "running"}), {}, tmp_path
        )
    assert ended.value.code == 1
    err = capsys.readouterr().err
    assert "Disk full: no space left on device while writing" in err and "summary.json" in err
    assert list(tmp_path.iterdir()) == []  # no stray temp file


def test_claiming_is_one_act_that_creates_and_locks(tmp_path, monkeypatch, finished):
    """The composed config names a folder; only claim_run_folder makes it, once per call."""
    from athanor.cli.api import _hydra_compose
    from athanor.cli.resolvers import claim_run_folder
    from athanor.record.scratch import is_scratch, remove_scratch

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RANK", raising=False)
    cfg = _hydra_compose(["name=twice"], None, "train")
    assert not (tmp_path / "outputs").exists()
    one, two = claim_run_folder(cfg), claim_run_folder(cfg)
    try:
        assert two.folder == one.folder.with_name(one.folder.name + "_1")  # same second or not
        assert (one.hydra_subdir, two.hydra_subdir) == (".hydra", ".hydra")
        assert json.loads((one.folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        one.lock.release(), two.lock.release()
    assert not (one.folder / LOCK_NAME).exists()

    dry = claim_run_folder(_hydra_compose(["dry_run=true"], None, "train"))
    assert is_scratch(dry.folder) and dry.lock is None
    remove_scratch(dry.folder)

    before = tree_hashes(finished)
    resumed = claim_run_folder(_hydra_compose([f"resume={finished}"], None, "train"))
    resumed.lock.release()
    assert resumed.folder == finished and resumed.hydra_subdir.startswith(".hydra/resume-")
    assert tree_hashes(finished) == before  # .hydra/resume-* is Hydra's, when the job starts
