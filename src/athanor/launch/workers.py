"""`train distributed.nproc_per_node=N`: this process launches the worker group itself.

The parent has composed the config and created the run folder (Hydra ran once, here). It starts
N workers with torch's own elastic launcher (standalone rendezvous on a free port, like
``torchrun --standalone``); each worker gets the frozen plain-dict config and the run folder and
calls ``run.train_run``: Hydra never runs again. When a worker fails, the launcher stops the
others; each worker leaves a short outcome file, and the parent raises the first real error (not
the "another rank failed" errors it caused) so the user reads it once, with the usual exit code.

Signals: the stop signals stay athanor's in this process too (torch's launcher handles only
SIGHUP/SIGQUIT); a relay passes them on to every worker, which stop together and save, so the
launcher ends like a one-process run: ``interrupted`` and exit 130. A worker that dies without a
word (kill -9) is named, with its exit code, in one paragraph.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from athanor.errors import (
    ERROR_KINDS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    ConfigError,
    InterruptedRun,
    PeerFailed,
    UserCodeError,
    as_user_code,
    kind_of,
    user_traceback,
)
from athanor.process import collector
from athanor.process.signals import StopSignals, signal_name
from athanor.record.folder import RunDir, resume_command

log = logging.getLogger("athanor")

# Hydra's default job-logging format, so a worker's lines look like the parent's.
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
# A worker reports its error by kind (errors.ERROR_KINDS); the parent raises the same kind: the
# same exit code and the same text as in a one-process run.


def wants_launch(config: dict[str, Any]) -> bool:
    """True when this process should start a worker group (nproc_per_node > 1, not in one)."""
    from athanor.distributed import in_worker_group

    nproc = int(config.get("distributed", {}).get("nproc_per_node", 1))
    if nproc <= 1:
        return False
    if in_worker_group():
        raise ConfigError(
            f"distributed.nproc_per_node={nproc} inside a torchrun worker group: torchrun already "
            "started the processes. Use either `torchrun --nproc_per_node=N -m athanor.train ...` "
            "or `train distributed.nproc_per_node=N ...`, not both."
        )
    return True


def launch(config: dict[str, Any], run_dir: Path) -> float | None:
    """Run the training in ``nproc_per_node`` local worker processes; rank 0's return value."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from athanor import plugins
    from athanor.config.settings import run_settings
    from athanor.engine.build import validate

    plugins.load_user_code(config.get("imports"))  # the user's builders, before validation
    settings = run_settings(config)  # user errors surface here, once, before any process starts
    validate(config)
    collector.start_up_done()  # from here this process only waits for its workers
    nproc = settings.distributed.nproc_per_node
    log.info("launching %d worker processes (torch elastic, standalone rendezvous)", nproc)
    with (
        tempfile.TemporaryDirectory(prefix="athanor-launch-") as scratch,
        StopSignals.watch() as signals,
    ):
        launch_config = LaunchConfig(
            min_nodes=1,
            max_nodes=1,
            nproc_per_node=nproc,
            run_id=str(uuid.uuid4()),
            rdzv_backend="c10d",
            rdzv_endpoint="localhost:0",  # a free port, as `torchrun --standalone` does
            max_restarts=0,
            monitor_interval=0.1,
            start_method="spawn",
            logs_specs=DefaultLogsSpecs(log_dir=scratch),
            # SIGTERM/SIGINT/SIGUSR1 stay athanor's: torch's handler would raise in the middle of
            # the launcher and kill the workers' save; the relay hands them on instead
            signals_to_handle="SIGHUP,SIGQUIT",
        )
        try:
            with _quiet_launcher(), _relay(signals, Path(scratch)):
                results = elastic_launch(launch_config, worker)(config, str(run_dir), scratch)
        except ChildFailedError as failed:
            cause = _root_cause(Path(scratch), failed, run_dir)
            if isinstance(cause, InterruptedRun):
                signals.forward()  # e.g. submitit's requeue, now that the workers have saved
            raise cause from None
    if signals.requested:  # every worker had finished when the signal came: 130 all the same
        raise _interrupted_after_the_end(run_dir, signals)
    return results.get(0)


@contextlib.contextmanager
def _relay(signals: StopSignals, scratch: Path) -> Iterator[None]:
    """While the group runs, a stop signal to this process reaches every worker: SIGTERM (stop
    after the step, save), and SIGINT once this process had two (exit at once). A worker that
    starts later gets it as soon as it has said its PID (its handler is installed by then)."""
    done = threading.Event()
    told: dict[str, set[int]] = {}

    def tell() -> None:
        while not done.wait(0.05):
            wanted = [signal.SIGTERM] if signals.requested else []
            wanted += [signal.SIGINT] if signals.sigints >= 2 else []
            for pid_file in scratch.glob("pid-*"):
                for sig in wanted:
                    if sig not in told.setdefault(pid_file.name, set()):
                        told[pid_file.name].add(sig)
                        with contextlib.suppress(ProcessLookupError, ValueError):
                            os.kill(int(pid_file.read_text()), sig)

    thread = threading.Thread(target=tell, name="athanor-signal-relay", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _interrupted_after_the_end(run_dir: Path, signals: StopSignals) -> InterruptedRun:
    from athanor.record.record import correct_outcome

    error = f"stopped by {signal_name(signals.received)} as the workers finished; saved"
    correct_outcome(RunDir(run_dir), "interrupted", error)
    return InterruptedRun(error)


def worker(config: dict[str, Any], run_dir: str, scratch: str) -> float | None:
    """One worker process: log like the parent, train, and leave an outcome file on failure."""
    from athanor.distributed import env_dist
    from athanor.engine.run import train_run

    StopSignals.install()  # before the PID is known: the launcher's relayed SIGTERM only asks
    d = env_dist()
    Path(scratch, f"pid-{d.rank}").write_text(str(os.getpid()))
    _configure_logging(Path(run_dir), d.is_main)
    if "OMP_NUM_THREADS" not in os.environ:  # N workers share the cores instead of each using all
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["LOCAL_WORLD_SIZE"])))
    try:
        return train_run(config, Path(run_dir))
    except BaseException as err:  # noqa: BLE001 - every failure is reported by the parent
        outcome, code = _outcome(err, d.rank)
        Path(scratch, f"outcome-{d.rank}.json").write_text(json.dumps(outcome))
        sys.exit(code)


def _outcome(err: BaseException, rank: int) -> tuple[dict[str, Any], int]:
    """What the parent needs to raise a worker's failure again, and the worker's exit code."""
    if isinstance(err, SystemExit):  # a rank leaving quietly: rank 0 reports the error
        kind, code = "SystemExit", err.code if isinstance(err.code, int) else EXIT_FAILED
    elif isinstance(err, KeyboardInterrupt):
        kind, code = "InterruptedRun", EXIT_INTERRUPTED
    elif (kind := kind_of(err)) is not None:  # an expected error: its kind's exit code
        code = ERROR_KINDS[kind].exit_code
    elif (framed := as_user_code(err)) is not None:  # their traceback goes in the message
        kind, code, err = "UserCodeError", EXIT_FAILED, _with_traceback(framed)
    else:
        kind, code = "Exception", EXIT_FAILED
    message = (
        str(err) if kind in (*ERROR_KINDS, "UserCodeError") else f"{type(err).__name__}: {err}"
    )
    outcome = {"rank": rank, "kind": kind, "message": message}
    return {**outcome, "traceback": traceback.format_exc().rstrip()}, code


def _with_traceback(err: UserCodeError) -> UserCodeError:
    """A worker's error in the user's own code (a builder, a Dataset item), its message followed
    by their traceback: the parent shows both, as a single-process run would."""
    return UserCodeError(f"{err}\n{user_traceback(err)}".rstrip())


@contextlib.contextmanager
def _quiet_launcher() -> Iterator[None]:
    """The launcher logs each worker's exit with its own traceback; the parent reports the root
    cause itself (once), so keep torch's launcher logs to critical ones meanwhile."""
    loggers = [logging.getLogger(n) for n in ("torch.distributed", "torch.multiprocessing")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _configure_logging(run_dir: Path, main: bool) -> None:
    """Rank 0 logs to the console and the run's train.log; the others print errors only."""
    root = logging.getLogger()
    root.handlers.clear()
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(console)
    if main:
        file = logging.FileHandler(run_dir / "train.log")
        file.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(file)
    root.setLevel(logging.INFO if main else logging.ERROR)


def _root_cause(scratch: Path, failed, run_dir: Path) -> BaseException:
    """The first real error among the workers (by rank), as the exception the CLI reports."""
    outcomes = sorted(
        (json.loads(p.read_text()) for p in scratch.glob("outcome-*.json")),
        key=lambda o: o["rank"],
    )
    # PeerFailed: stopped because of another rank; SystemExit: a non-zero rank leaving quietly
    real = [o for o in outcomes if o["kind"] not in ("PeerFailed", "SystemExit")]
    if real:
        cause = real[0]
        said = cause["message"]  # a user's error carries its traceback after the first line
        error = f"rank {cause['rank']}: {said.splitlines()[0] if said else said}"
        if cause["kind"] in ERROR_KINDS:
            exc = ERROR_KINDS[cause["kind"]].error(cause["message"])
        elif cause["kind"] == "UserCodeError":  # reported with the traceback it carries
            exc = UserCodeError(cause["message"])
        else:  # an unexpected error: the worker's own traceback says where
            exc = RuntimeError(f"rank {cause['rank']} failed:\n{cause['traceback']}")
    else:  # killed without a word (OOM killer, SIGKILL): the launcher knows the exit codes
        rank, failure = failed.get_first_failure()
        error = f"rank {rank} died with exit code {failure.exitcode}{_by_signal(failure.exitcode)}"
        exc = PeerFailed(
            f"Worker {error}; the other workers were stopped. The run folder {run_dir} keeps "
            f"the last checkpoint: resume with `{resume_command(run_dir)}`."
        )
    from athanor.record.record import correct_outcome

    # rank 0's record may only say "another rank failed": name the root cause there
    correct_outcome(
        RunDir(run_dir), "interrupted" if isinstance(exc, InterruptedRun) else "failed", error
    )
    return exc


def _by_signal(exitcode: int) -> str:
    """The signal that ended a worker, in words (a negative exit code is its number)."""
    if exitcode >= 0:
        return ""
    with contextlib.suppress(ValueError):
        name = signal.Signals(-exitcode).name
        outside = ": killed from outside, e.g. kill -9 or the out-of-memory killer"
        return f" ({name}{outside if name == 'SIGKILL' else ''})"
    return ""
