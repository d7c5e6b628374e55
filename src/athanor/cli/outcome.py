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
    as_user_code,
    kind_of,
    user_traceback,
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
    """First line: which builder, data set item or function failed; then the user's own
    traceback: from their first frame on (the plumbing that called it is left out)."""
    print(f"Error in your code: {err}\n{user_traceback(err)}", file=sys.stderr, end="", flush=True)
    log.debug("%s", err)


def record_failure(run_dir: Path, reason: str) -> None:
    """summary.json says `failed` with the reason, also for a run that failed while it was
    being built (the user's builder or Dataset raised before the record started)."""
    from athanor.distributed import env_dist
    from athanor.record.folder import RunDir
    from athanor.record.record import RunRecord, correct_outcome
    from athanor.record.scratch import is_scratch

    run = RunDir(run_dir)
    if not env_dist().is_main or is_scratch(run_dir):
        return
    if run.started():  # its record says failed; the reason in the user's terms
        if run.read_summary().get("status") == "failed":
            correct_outcome(run, "failed", reason)
        return
    RunRecord(run).failed_before_start(reason)


# file-system refusals that name a path: a place the user chose that cannot be read or written
PATH_ERRORS = {
    errno.EACCES: "permission denied: choose a place you can write to, or fix its permissions",
    errno.EPERM: "not permitted: choose a place you can write to, or fix its permissions",
    errno.EROFS: "the file system is read-only: choose a writable place",
    errno.ENOENT: "no such file or folder: check the path (a folder is created only for outputs)",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "it is a folder: give a file name",
    errno.EEXIST: "a file is in the way where a folder is needed: choose another path",
}


def path_message(err: OSError) -> str | None:
    """One sentence naming the path an OS error is about and the fix, or None when the error
    names no path or is not one of PATH_ERRORS."""
    if err.filename is None or err.errno not in PATH_ERRORS:
        return None
    return f"{err.filename}: {PATH_ERRORS[err.errno]} ({err.strerror})."


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
    except Exception as err:
        code = failure_code(err, run_dir)
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


def failure_code(err: Exception, run_dir: Path | None = None) -> int:
    """A full disk, a place that cannot be written, or an error in the user's own code, said as
    such (and recorded in ``run_dir``'s summary.json); -> the exit code. Anything else is a bug
    and is raised again, its whole traceback shown."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC and run_dir is not None:
        from athanor.record.folder import disk_full_message

        report("Disk full", disk_full_message(err, run_dir))
        return EXIT_FAILED
    said = path_message(err) if isinstance(err, OSError) and err.errno != errno.ENOENT else None
    if said is not None:  # a read-only or unwritable place: the path, not a traceback
        report("Failed", said)
        if run_dir is not None:
            record_failure(run_dir, said)
        return EXIT_FAILED
    framed = as_user_code(err)
    if framed is None:
        raise err
    report_user_code(framed)
    if run_dir is not None:
        record_failure(run_dir, f"error in your code: {str(framed).splitlines()[0]}")
    return EXIT_FAILED


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
