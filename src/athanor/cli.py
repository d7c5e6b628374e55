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
    PeerFailed,
)
from athanor.paths import register_resolvers, remove_scratch

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
    """Mark a run that failed before it started. A folder that already has a summary (a run
    that `resume=` points at) is left untouched: a rejected resume changes nothing."""
    from athanor.distributed import env_dist
    from athanor.paths import is_scratch
    from athanor.rundir import RunDir

    run = RunDir(run_dir)
    if (
        env_dist().is_main
        and run_dir.exists()
        and not run.summary.exists()
        and not is_scratch(run_dir)
    ):
        run.update_summary(status="failed", error=message)


def run_task(task, config: dict[str, Any], run_dir: Path) -> Any:
    """Run ``task`` and turn expected failures into one paragraph and an exit code."""
    from athanor.checkpoint import CheckpointSaveError

    debug = os.environ.get(DEBUG_ENV) == "1"
    try:
        return task(config, run_dir)
    except ConfigError as err:
        if debug:
            raise
        report("Config error", str(err))
        _record_failure(run_dir, str(err))
        code = EXIT_USER_ERROR
    except (NonFiniteError, CheckpointSaveError) as err:
        report("Training failed", str(err))
        code = EXIT_FAILED
    except InterruptedRun as err:
        log.warning("Run interrupted (%s); resume with resume=%s", err, run_dir)
        code = EXIT_INTERRUPTED
    except KeyboardInterrupt:
        log.warning("Run interrupted at once (second Ctrl-C); last.pt is the last checkpoint.")
        code = EXIT_INTERRUPTED
    except PeerFailed as err:
        from athanor.distributed import env_dist

        if env_dist().is_main:  # the failed rank shows its own error; say once why we stop
            report("Stopped", str(err))
        code = EXIT_FAILED
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
    """One run (or one sweep job): in this process, or in a worker group it launches itself.
    Returns the monitored metric's best value, which Hydra's sweepers optimize."""
    from athanor.launch import launch, wants_launch
    from athanor.run import train_run

    config, run_dir = _container(cfg), _output_dir()
    if _is_multirun() and config.get("logger", {}).get("progress") == "auto":
        config["logger"]["progress"] = "plain"  # sweep jobs share a terminal: lines, not bars

    def task(c: dict[str, Any], d: Path) -> Any:
        return launch(c, d) if wants_launch(c) else train_run(c, d)

    try:
        return run_task(task, config, run_dir)
    finally:
        remove_scratch(run_dir)  # non-zero ranks' and dry runs' Hydra output


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


def evaluate_config(argv: list[str], conf_dir: Path = CONF_DIR) -> dict[str, Any]:
    """conf/evaluate.yaml merged with `key=value` arguments. `data.*` keys are free (they
    override the checkpoint's own data config); any other unknown key is refused."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from athanor.registry import closest

    base = OmegaConf.load(conf_dir / "evaluate.yaml")
    bad = [a for a in argv if "=" not in a or a.startswith("=")]
    if bad:
        raise ConfigError(
            f"evaluate takes key=value arguments; {bad[0]!r} is not one. Example: "
            "evaluate ckpt=outputs/<date>/<run> split=val data.batch_size=256"
        )
    try:
        given = OmegaConf.from_dotlist(argv)
    except OmegaConfBaseException as err:
        raise ConfigError(f"Could not parse the evaluate arguments: {err}") from err
    known = [str(k) for k in base.keys()]  # `key in base` is False for a ??? value
    for key in given:
        if key not in known:
            raise ConfigError(
                f"evaluate has no setting {key!r}.{closest(str(key), known)} Valid keys: "
                f"{', '.join(known)} (data.* overrides the checkpoint's data config)."
            )
    config = OmegaConf.to_container(OmegaConf.merge(base, given), resolve=True)
    if config.get("ckpt") in (None, "", "???"):
        raise ConfigError(
            "evaluate needs ckpt=<run folder or .pt file>, e.g. evaluate ckpt=outputs/<date>/<run>."
        )
    return config


def evaluate(argv: list[str] | None = None) -> None:
    """`evaluate ckpt=<run folder or .pt> [split=val|test] [data.* overrides]` (key=value
    arguments over conf/evaluate.yaml; no run folder is created)."""
    from athanor.evaluation import evaluate_checkpoint

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    argv = sys.argv[1:] if argv is None else argv
    try:
        evaluate_checkpoint(evaluate_config(argv))
    except ConfigError as err:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        report("Config error", str(err))
        sys.exit(EXIT_USER_ERROR)
