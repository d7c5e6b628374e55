"""The `train` command: compose conf/train.yaml with the overrides (a Hydra app) and run one
training, or one job of a sweep, in this process or in a worker group it launches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from athanor.cli.compose import output_dir, run_hydra_app, to_plain
from athanor.cli.help import print_help_if_asked, train_help
from athanor.cli.outcome import is_multirun, run_task
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
        return launch(c, d) if wants_launch(c) else train_run(c, d)

    try:
        return run_task(task, config, run_dir)
    finally:
        remove_scratch(run_dir)  # non-zero ranks' and dry runs' Hydra output


def train() -> None:
    """`train [overrides]`: compose conf/train.yaml with the overrides and run (Hydra app)."""
    print_help_if_asked(train_help)  # athanor's page; Hydra's stays as --hydra-help
    run_hydra_app(_train_task, "train")
