"""User-facing errors and how each ends a command: one table, used by `train`, `evaluate` and the
DDP launcher alike (cli/outcome.py reports, launch/workers.py carries a worker's error home)."""

from __future__ import annotations

import functools
import os
import re
import site
import sysconfig
import traceback
from dataclasses import dataclass

EXIT_USER_ERROR = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class ConfigError(ValueError):
    """A mistake in the user's config or command line. Reported as one paragraph, exit code 2."""


class NonFiniteError(RuntimeError):
    """The loss or gradients became NaN/Inf; the run stops and is marked failed."""


class CheckpointSaveError(RuntimeError):
    """A save failed with checkpoint.on_error=stop (the earlier checkpoints are intact)."""


class InterruptedRun(Exception):
    """Raised by the loop after a clean stop on SIGTERM/SIGUSR1/SIGINT (a checkpoint was written)."""


class PeerFailed(RuntimeError):
    """A collective failed because another process of the DDP group stopped (its error is the
    cause, shown by that process); this rank only says once that it stops too."""


class UserCodeError(Exception):
    """The user's own code (a module in `imports`, a plugin, a builder) raised. The message says
    which; the cause is their exception, whose traceback is shown (it is their code to fix)."""


@dataclass(frozen=True)
class ErrorKind:
    """How an expected error ends a command: its exit code and the heading of its paragraph
    (None: logged as a warning instead, e.g. an interrupt that saved a checkpoint)."""

    error: type[BaseException]
    exit_code: int
    heading: str | None


ERROR_KINDS: dict[str, ErrorKind] = {
    "ConfigError": ErrorKind(ConfigError, EXIT_USER_ERROR, "Config error"),
    "NonFiniteError": ErrorKind(NonFiniteError, EXIT_FAILED, "Training failed"),
    "CheckpointSaveError": ErrorKind(CheckpointSaveError, EXIT_FAILED, "Training failed"),
    "InterruptedRun": ErrorKind(InterruptedRun, EXIT_INTERRUPTED, None),
    "PeerFailed": ErrorKind(PeerFailed, EXIT_FAILED, "Stopped"),
}
EXPECTED_ERRORS = tuple(kind.error for kind in ERROR_KINDS.values())


def kind_of(err: BaseException) -> str | None:
    """The name in ERROR_KINDS of an expected error, or None for anything else (a bug)."""
    return next((name for name, k in ERROR_KINDS.items() if isinstance(err, k.error)), None)


# -- the user's own code: which frames are theirs ---------------------------------------------


@functools.cache
def _library_roots() -> tuple[str, ...]:
    """Folders whose files are not the user's: athanor's own package, the standard library and
    the installed packages (torch, Hydra, ...)."""
    paths = sysconfig.get_paths()
    here = os.path.dirname(os.path.abspath(__file__))
    roots = {here, *(paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))}
    roots |= {site.getusersitepackages(), *getattr(site, "getsitepackages", list)()}
    return tuple(os.path.realpath(r) + os.sep for r in roots)


def is_user_file(filename: str) -> bool:
    """A frame's file is the user's own code (a module in `imports`, a plugin, a script)."""
    if filename.startswith("<"):  # <frozen ...>, <string>
        return False
    return not os.path.realpath(filename).startswith(_library_roots())


def _user_frames(err: BaseException) -> list[traceback.FrameSummary]:
    """The frames of ``err``'s traceback from the first one in the user's code on: their code
    and what it called, without the plumbing (Hydra, athanor) that called it."""
    frames = list(traceback.extract_tb(err.__traceback__))
    first = next((i for i, f in enumerate(frames) if is_user_file(f.filename)), None)
    return [] if first is None else frames[first:]


def as_user_code(err: BaseException) -> UserCodeError | None:
    """An exception raised in the user's code (their model's forward, their loss, a helper
    their Dataset calls) as a UserCodeError naming the function, file and line; one framed
    already (a builder's, a Dataset item's) as it is; else None."""
    if isinstance(err, UserCodeError):
        return err
    mine = [
        (frame.f_code, line)
        for frame, line in traceback.walk_tb(err.__traceback__)
        if is_user_file(frame.f_code.co_filename)
    ]
    if not mine:
        return None
    code, line = mine[-1]  # the innermost: where it raised
    framed = UserCodeError(
        f"{getattr(code, 'co_qualname', code.co_name)} ({code.co_filename}, line {line}) "
        f"raised {type(err).__name__}: {err}"
    )
    framed.__cause__ = err
    return framed


def user_traceback(err: UserCodeError) -> str:
    """The traceback of the user's exception behind ``err``, from their first frame on ('' when
    ``err`` carries it in its message already: re-raised from a DataLoader or DDP worker)."""
    cause = err.__cause__
    if cause is None:
        return ""
    frames = _user_frames(cause)
    lines = traceback.format_list(frames) if frames else traceback.format_tb(cause.__traceback__)
    return "".join(
        ["Traceback (most recent call last):\n", *lines]
        + traceback.format_exception_only(type(cause), cause)
    )


# -- a library's error, quoted ---------------------------------------------------------------

# a C++ source location that torch's and torchvision's errors start with ("decode_image,
# /__w/vision/.../decode_image.cpp:61, "): where their code raised, nothing the user can act on
_SOURCE_LOCATION = re.compile(r"^\(?[\w:()<>~]+, \S+\.(?:cpp|cc|cu|h|hpp):\d+,\s*")


def short_reason(text: str, limit: int = 200) -> str:
    """The reason a library's error gives, quoted inside one of athanor's sentences: its first
    line and first sentence, without a C++ source location, cut at a word (with "...") rather
    than mid-word when it is still longer than ``limit``."""
    lines = (_SOURCE_LOCATION.sub("", line.strip()) for line in text.splitlines())
    first = next((line for line in lines if line), "")
    end = first.find(". ")
    sentence = (first if end < 0 else first[: end + 1]).rstrip(".")
    if len(sentence) <= limit:
        return sentence
    return sentence[: sentence.rfind(" ", 0, limit - 3)].rstrip(",;:") + "..."


# -- files the user or an earlier run wrote ----------------------------------------------------


def yaml_message(err: BaseException, source: str | None = None) -> str | None:
    """A YAML file that does not parse (a project's conf/ file, athanor's own, a run folder's
    config.yaml), named with the line and column where the parser stopped (``source`` names a
    file the parser read as a string); None when ``err`` is not a YAML error."""
    import yaml

    while err is not None and not isinstance(err, yaml.YAMLError):
        err = err.__cause__ or err.__context__
    if err is None:
        return None
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = "; ".join(
        str(part) for part in (getattr(err, "context", None), getattr(err, "problem", None)) if part
    )
    if mark is None:
        return f"A config file is not valid YAML: {problem or err}."
    return (
        f"{source or mark.name}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML "
        f"({problem or err}). Fix the file there (a missing bracket, quote or colon, or a tab "
        "for indentation, are the usual causes)."
    )
