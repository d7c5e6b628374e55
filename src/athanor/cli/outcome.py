"""How a command ends: expected failures become one paragraph on stderr and an exit code."""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

from athanor.errors import (
    ERROR_KINDS,
    EXIT_INTERRUPTED,
    EXPECTED_ERRORS,
    ConfigError,
    PeerFailed,
    kind_of,
)

log = logging.getLogger("athanor")

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


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _record_failure(run_dir: Path, message: str) -> None:
    """Mark a run that failed before it started. A folder that already has a summary (a run
    that `resume=` points at) is left untouched: a rejected resume changes nothing."""
    from athanor.distributed import env_dist
    from athanor.record.folder import RunDir
    from athanor.record.scratch import is_scratch

    run = RunDir(run_dir)
    if (
        env_dist().is_main
        and run_dir.exists()
        and not run.summary.exists()
        and not is_scratch(run_dir)
    ):
        run.update_summary(status="failed", error=message)


def run_task(task, config: dict[str, Any], run_dir: Path) -> Any:
    """Run ``task`` and turn expected failures into one paragraph and the exit code of their kind
    (errors.ERROR_KINDS); anything else is a bug and keeps its traceback."""
    try:
        return task(config, run_dir)
    except EXPECTED_ERRORS as err:
        if isinstance(err, ConfigError) and os.environ.get(DEBUG_ENV) == "1":
            raise
        code = _end(err, run_dir)
    except KeyboardInterrupt:
        log.warning("Run interrupted at once (second Ctrl-C); last.pt is the last checkpoint.")
        code = EXIT_INTERRUPTED
    if is_multirun() and code != EXIT_INTERRUPTED:
        return float("nan")  # the sweep goes on; the job's summary.json says why it failed
    sys.exit(code)


def _end(err: BaseException, run_dir: Path) -> int:
    """Say once what ended the run, as its kind says; -> the exit code."""
    from athanor.distributed import env_dist

    kind = ERROR_KINDS[kind_of(err)]
    if kind.heading is None:
        log.warning("Run interrupted (%s); resume with resume=%s", err, run_dir)
    elif not isinstance(err, PeerFailed) or env_dist().is_main:
        # a PeerFailed rank stops because another failed and showed its own error: say it once
        report(kind.heading, str(err))
    if isinstance(err, ConfigError):
        _record_failure(run_dir, str(err))
    return kind.exit_code
