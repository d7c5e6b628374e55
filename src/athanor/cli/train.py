"""The `train` command: compose conf/train.yaml with the overrides (a Hydra app) and run one
training, or one job of a sweep, in this process or in a worker group it launches."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from athanor.cli.compose import output_dir, run_hydra_app, to_plain
from athanor.cli.help import print_help_if_asked, train_help
from athanor.cli.outcome import is_multirun, report, run_task
from athanor.cli.resume_config import resumed_config
from athanor.engine.signals import StopSignals
from athanor.errors import EXIT_USER_ERROR
from athanor.record.scratch import remove_scratch


def _train_task(cfg) -> Any:
    """One run (or one sweep job): in this process, or in a worker group it launches itself.
    Returns the monitored metric's best value, which Hydra's sweepers optimize."""
    from athanor.engine.launch import launch, wants_launch
    from athanor.engine.run import train_run

    config, run_dir = to_plain(cfg), output_dir()
    if is_multirun() and config.get("logger", {}).get("progress") == "auto":
        config["logger"]["progress"] = "plain"  # sweep jobs share a terminal: lines, not bars

    def task(c: dict[str, Any], d: Path) -> Any:
        c = resumed_config(c, d)  # resume=: the run's own config + the command line's changes
        return launch(c, d) if wants_launch(c) else train_run(c, d)

    try:
        return run_task(task, config, run_dir)
    finally:
        remove_scratch(run_dir)  # non-zero ranks' and dry runs' Hydra output


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


def train() -> None:
    """`train [overrides]`: compose conf/train.yaml with the overrides and run (Hydra app)."""
    StopSignals.install()  # first: a signal during start-up is a stop request, not a kill
    print_help_if_asked(train_help)  # athanor's page; Hydra's stays as --hydra-help
    problem = sweep_under_torchrun(sys.argv[1:], dict(os.environ))
    if problem:
        from athanor.distributed import env_dist

        if env_dist().is_main:  # said once, not by every worker
            report("Config error", problem)
        sys.exit(EXIT_USER_ERROR)
    run_hydra_app(_train_task, "train")
