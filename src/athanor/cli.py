"""Command-line entry points. The only module that imports Hydra/OmegaConf: it composes the
config, converts it once to plain containers and hands it to ``run.train_run``."""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

from athanor.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    ConfigError,
    InterruptedRun,
    NonFiniteError,
)
from athanor.paths import register_resolvers

log = logging.getLogger("athanor")

CONF_DIR = Path(os.environ.get("ATHANOR_CONF", Path(__file__).resolve().parents[2] / "conf"))
DEBUG_ENV = "ATHANOR_DEBUG"  # =1: show full tracebacks for user errors too


def report(kind: str, message: str) -> None:
    """One paragraph on stderr (and in the run's log)."""
    text = textwrap.fill(
        f"{kind}: {message}", width=100, break_long_words=False, break_on_hyphens=False
    )
    print(text, file=sys.stderr, flush=True)
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (text,), None)
    for handler in logging.getLogger().handlers:  # the run's log file, not the console again
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _record_failure(run_dir: Path, message: str) -> None:
    from athanor.distributed import env_dist
    from athanor.rundir import RunDir

    if (
        env_dist().is_main
        and run_dir.exists()
        and not str(run_dir).startswith("/tmp/athanor-scratch")
    ):
        RunDir(run_dir).update_summary(status="failed", error=message)


def run_task(task, config: dict[str, Any], run_dir: Path) -> Any:
    """Run ``task`` and turn expected failures into one paragraph and an exit code."""
    debug = os.environ.get(DEBUG_ENV) == "1"
    try:
        return task(config, run_dir)
    except ConfigError as err:
        if debug:
            raise
        report("Config error", str(err))
        _record_failure(run_dir, str(err))
        code = EXIT_USER_ERROR
    except NonFiniteError as err:
        report("Training failed", str(err))
        code = EXIT_FAILED
    except InterruptedRun as err:
        log.warning("Run interrupted (%s); resume with resume=%s", err, run_dir)
        code = EXIT_INTERRUPTED
    except KeyboardInterrupt:
        log.warning("Run interrupted at once (second Ctrl-C); last.pt is the last checkpoint.")
        code = EXIT_INTERRUPTED
    if _is_multirun() and code != EXIT_INTERRUPTED:
        return float("nan")  # the sweep goes on; the job's summary.json says why it failed
    sys.exit(code)


def _container(cfg) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def _output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def _train_task(cfg) -> Any:
    from athanor.launch import maybe_launch
    from athanor.run import train_run

    config = _container(cfg)
    if _is_multirun() and config.get("logger", {}).get("progress") == "auto":
        config["logger"]["progress"] = "plain"  # sweep jobs share a terminal: lines, not bars
    return run_task(lambda c, d: maybe_launch(c, d) or train_run(c, d), config, _output_dir())


def _evaluate_task(cfg) -> Any:
    from athanor.evaluation import evaluate_checkpoint

    config = _container(cfg)
    return run_task(lambda c, d: evaluate_checkpoint(c), config, _output_dir())


def check_group_choices(argv: list[str], conf_dir: Path = CONF_DIR) -> str | None:
    """A message for ``group=option`` overrides naming no file of ``conf/<group>/``, or None.

    Hydra reports these too, but without suggesting the closest option; a sweep's
    comma-separated choices are each checked."""
    from athanor.registry import closest

    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        folder = conf_dir / key
        if not sep or "." in key or not key or not folder.is_dir() or value in ("", "null"):
            continue
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        for choice in value.split(","):
            if choice not in options:
                return (
                    f"{key}={choice!r} names no file conf/{key}/{choice}.yaml.{closest(choice, options)} "
                    f"Valid {key} options: {', '.join(options)}."
                )
    return None


def _hydra_main(task, config_name: str) -> None:
    import hydra

    problem = check_group_choices(sys.argv[1:])
    if problem:
        report("Config error", problem)
        sys.exit(EXIT_USER_ERROR)
    register_resolvers()
    main = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(task)
    main()


def train() -> None:
    """`train [overrides]`: compose conf/train.yaml with the overrides and run (Hydra app)."""
    _hydra_main(_train_task, "train")


def evaluate() -> None:
    """`evaluate ckpt=<run folder or .pt> [split=val|test] [data.* overrides]`."""
    _hydra_main(_evaluate_task, "evaluate")
