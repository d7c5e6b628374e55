"""The `evaluate` command: key=value arguments over conf/evaluate.yaml (no Hydra app, no run
folder), then ``offline.checkpoint_eval``."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from athanor.cli.compose import CONF_DIR
from athanor.cli.help import evaluate_help, print_help_if_asked
from athanor.cli.outcome import DEBUG_ENV, failure_code, report
from athanor.errors import EXIT_USER_ERROR, ConfigError
from athanor.process import collector


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
    collector.pause_for_start_up()  # before torch is imported, as `train` does
    from athanor.offline.checkpoint_eval import evaluate_checkpoint

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    argv = sys.argv[1:] if argv is None else argv
    print_help_if_asked(evaluate_help, argv)
    try:
        evaluate_checkpoint(evaluate_config(argv))
    except ConfigError as err:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        report("Config error", str(err))
        sys.exit(EXIT_USER_ERROR)
    except Exception as err:  # the user's code, a place that cannot be written; else a bug
        sys.exit(failure_code(err))
