"""The `train` command: compose conf/train.yaml with the overrides (a Hydra app) and run one
training, or one job of a sweep, in this process or in a worker group it launches."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from athanor.cli import config_provenance
from athanor.cli.compose import output_dir, run_hydra_app, to_plain
from athanor.cli.help import print_help_if_asked, train_help
from athanor.cli.outcome import is_multirun, report, run_task
from athanor.errors import EXIT_USER_ERROR
from athanor.process import collector
from athanor.process.signals import StopSignals
from athanor.record.scratch import remove_scratch


def _train_task(cfg) -> Any:
    """One run (or one sweep job): in this process, or in a worker group it launches itself.
    Returns the monitored metric's best value, which Hydra's sweepers optimize."""
    from athanor.engine.run import train_run
    from athanor.launch.workers import launch, wants_launch

    config, run_dir = to_plain(cfg), output_dir()
    sources = _sources()
    if is_multirun() and config.get("logger", {}).get("progress") == "auto":
        config["logger"]["progress"] = "plain"  # sweep jobs share a terminal: lines, not bars
        sources["logger.progress"] = "sweep job (progress lines, not bars)"

    def task(c: dict[str, Any], d: Path) -> Any:
        from athanor.cli.resume_config import resumed_config
        from athanor.distributed import env_dist

        composed = c
        c = resumed_config(c, d)  # resume=: the run's own config + the command line's changes
        if env_dist().is_main and not c.get("dry_run"):
            config_provenance.save(d, c, sources, resumed=c is not composed)
        return launch(c, d) if wants_launch(c) else train_run(c, d)

    try:
        return run_task(task, config, run_dir)
    finally:
        collector.start_up_done()  # also after a job that failed before its first step
        remove_scratch(run_dir)  # non-zero ranks' and dry runs' Hydra output


def _sources() -> dict[str, str]:
    """Where each key of the running app's config came from (cli/config_provenance.py)."""
    from hydra.core.hydra_config import HydraConfig

    return config_provenance.attribute("train", list(HydraConfig.get().overrides.task))


def print_provenance_if_asked(argv: list[str]) -> None:
    """`train ... --cfg job --provenance`: every key of the composed config with where its
    value came from, then exit (Hydra itself knows no --provenance)."""
    if "--provenance" not in argv:
        return
    from athanor.cli.api import compose
    from athanor.errors import ConfigError

    rest, skip = [], False
    for arg in argv:
        if skip or arg == "--provenance":
            skip = False
            continue
        if arg in ("--cfg", "-c"):
            skip = True  # its value: job (what is shown is the job's config either way)
            continue
        rest.append(arg)
    flags = [a for a in rest if a.startswith("-")]
    if flags:
        report("Config error", f"--provenance takes overrides only, not {' '.join(flags)}.")
        sys.exit(EXIT_USER_ERROR)
    try:
        compose(rest, provenance=True)
    except ConfigError as err:
        report("Config error", str(err))
        sys.exit(EXIT_USER_ERROR)
    sys.exit(0)


def sweep_under_torchrun(argv: list[str], environ: dict[str, str]) -> str | None:
    """Why a sweep started by torchrun is refused, or None. Each torchrun worker would run the
    jobs on its own and job 1 waits forever for a process group that job 0 closed."""
    sweeping = any(a in ("-m", "--multirun") or a.startswith("hparams_search=") for a in argv)
    if not sweeping or int(environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    nproc = environ.get("LOCAL_WORLD_SIZE", environ["WORLD_SIZE"])
    rest = " ".join(a for a in argv if a not in ("-m", "--multirun"))
    return (
        f"a sweep (-m) cannot run inside torchrun (WORLD_SIZE={environ['WORLD_SIZE']}): each "
        "sweep job starts its own process group. Start the sweep without torchrun and let each "
        f"job launch its workers: `train -m {rest} distributed.nproc_per_node={nproc}`, or "
        f"`train -m {rest} hydra/launcher=pool hydra.launcher.gpus_per_job={nproc}` to spread "
        "the jobs over the GPUs."
    )


def exit_at_once(code: int | str | None) -> NoReturn:
    """End the process the way the interpreter would, minus its teardown: wait for the threads
    it would wait for, run the atexit handlers (logging, trackers, multiprocessing), flush the
    standard streams, then ``os._exit``. The teardown skipped (freeing every module of torch and
    its C++ globals) is pure cost: ~1 s on an idle 2-core machine, 5-10 s when it is busy, paid
    by every `train` process after its run has ended."""
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): printed, exit status 1
        print(code, file=sys.stderr)
        code = 1
    # the interpreter's own first step: threading's exit hooks (a ThreadPoolExecutor's workers
    # wait for them), then every non-daemon thread is joined
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    else:
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said
            pass
    os._exit(code)


def train() -> NoReturn:
    """The `train` command (console script, ``python -m athanor.train``): the run, then
    :func:`exit_at_once` with its exit status. An escaping exception (a traceback) or a Ctrl-C
    takes the interpreter's usual way out."""
    collector.pause_for_start_up()  # before torch is imported: process/collector.py
    try:
        _train_command()
    except SystemExit as done:
        exit_at_once(done.code)
    exit_at_once(0)


def _train_command() -> None:
    """`train [overrides]`: compose conf/train.yaml with the overrides and run (Hydra app)."""
    problem = sweep_under_torchrun(sys.argv[1:], dict(os.environ))
    if problem:  # before the signal handlers: torchrun's SIGTERM to the other workers is no stop
        from athanor.distributed import env_dist

        if env_dist().is_main:  # said once, not by every worker
            report("Config error", problem)
        sys.exit(EXIT_USER_ERROR)
    StopSignals.install()  # a signal during start-up is a stop request, not a kill
    print_help_if_asked(train_help)  # athanor's page; Hydra's stays as --hydra-help
    print_provenance_if_asked(sys.argv[1:])
    run_hydra_app(_train_task, "train")
