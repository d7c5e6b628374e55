"""How a command ends: expected failures become one paragraph on stderr and an exit code."""

from __future__ import annotations

import errno
import logging
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

from athanor.errors import (
    ERROR_KINDS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXPECTED_ERRORS,
    ConfigError,
    PeerFailed,
    UserCodeError,
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


def report_user_code(err: UserCodeError) -> None:
    """First line: which module or builder failed; then the user's own traceback (their code)."""
    import traceback

    cause = err.__cause__ or err
    trace = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    print(f"Error in your code: {err}\n{trace}", file=sys.stderr, end="", flush=True)
    log.debug("%s", err)


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _discard_unstarted(run_dir: Path) -> str:
    """A config error before the run started leaves nothing behind: Hydra's files of a folder
    without a run record go (a run that `resume=` points at keeps everything). Says so."""
    from athanor.distributed import env_dist
    from athanor.record.folder import RunDir
    from athanor.record.scratch import is_scratch

    if not env_dist().is_main or is_scratch(run_dir) or is_multirun():
        return ""
    return (
        " Nothing was written: the run never started."
        if RunDir(run_dir).discard_unstarted()
        else ""
    )


def run_task(task, config: dict[str, Any], run_dir: Path) -> Any:
    """Run ``task`` and turn expected failures into one paragraph and the exit code of their kind
    (errors.ERROR_KINDS); anything else is a bug and keeps its traceback."""
    try:
        return task(config, run_dir)
    except EXPECTED_ERRORS as err:
        if isinstance(err, ConfigError) and os.environ.get(DEBUG_ENV) == "1":
            raise
        code = _end(err, run_dir)
    except UserCodeError as err:
        report_user_code(err)
        code = EXIT_FAILED
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise  # any other OS error here is a bug: its traceback says where
        from athanor.record.folder import disk_full_message

        report("Disk full", disk_full_message(err, run_dir))
        code = EXIT_FAILED
    except KeyboardInterrupt:
        from athanor.record.folder import resume_command

        log.warning(
            "Run interrupted at once (second Ctrl-C); last.pt is the last checkpoint: resume "
            "with `%s`",
            resume_command(run_dir),
        )
        code = EXIT_INTERRUPTED
    if is_multirun() and code != EXIT_INTERRUPTED:
        return float("nan")  # the sweep goes on; the job's summary.json says why it failed
    sys.exit(code)


def _end(err: BaseException, run_dir: Path) -> int:
    """Say once what ended the run, as its kind says; -> the exit code."""
    from athanor.distributed import env_dist

    kind = ERROR_KINDS[kind_of(err)]
    if kind.heading is None:
        from athanor.record.folder import resume_command

        log.warning("Run interrupted (%s); resume with `%s`", err, resume_command(run_dir))
    elif not isinstance(err, PeerFailed) or env_dist().is_main:
        # a PeerFailed rank stops because another failed and showed its own error: say it once
        unstarted = _discard_unstarted(run_dir) if isinstance(err, ConfigError) else ""
        report(kind.heading, str(err) + unstarted)
    return kind.exit_code
