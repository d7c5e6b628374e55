"""`train` ends with ``os._exit`` after the interpreter's own shutdown steps (cli/train.py
``exit_at_once``): what those steps promise must still happen, with the run's exit status."""

from __future__ import annotations

HOOK = """
import atexit, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

idle = ThreadPoolExecutor(1)  # never shut down: its worker waits for threading's exit hook
idle.submit(time.sleep, 0)

def late_write():
    time.sleep(0.5)
    Path("thread_done").write_text("ok")

threading.Thread(target=late_write).start()  # not a daemon: the interpreter would wait for it
atexit.register(lambda: Path("atexit_done").write_text("ok"))
print("buffered line from the user's module", end="")  # no newline, no flush: lost if not flushed
"""


def test_the_exit_waits_for_threads_runs_atexit_flushes_and_keeps_the_status(tmp_path, train):
    (tmp_path / "hook.py").write_text(HOOK)
    # the user's module loads, then the settings refuse trainer.epochs: exit 2 (a config error)
    result = train("imports=[hook.py]", "trainer.epochs=abc", expect=2)
    assert "trainer.epochs" in result.stderr + result.stdout
    assert (tmp_path / "thread_done").read_text() == "ok"
    assert (tmp_path / "atexit_done").read_text() == "ok"
    assert "buffered line from the user's module" in result.stdout


def test_a_completed_run_exits_0_with_its_log_and_summary_written(tmp_path, train):
    train("trainer.max_steps=2", "trainer.epochs=1", "hydra.run.dir=run")
    assert (tmp_path / "run" / "summary.json").read_text().count('"completed"') == 1
    assert "run completed" in (tmp_path / "run" / "train.log").read_text()  # logging's atexit
