"""User-facing errors and how each ends a command: one table, used by `train`, `evaluate` and the
DDP launcher alike (cli/outcome.py reports, launch/workers.py carries a worker's error home)."""

from __future__ import annotations

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
