"""User-facing errors: one clear paragraph, no traceback, a distinct exit code."""

from __future__ import annotations

EXIT_USER_ERROR = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class ConfigError(ValueError):
    """A mistake in the user's config or command line. Reported as one paragraph, exit code 2."""


class NonFiniteError(RuntimeError):
    """The loss or gradients became NaN/Inf; the run stops and is marked failed."""


class InterruptedRun(Exception):
    """Raised by the loop after a clean stop on SIGTERM/SIGUSR1/SIGINT (a checkpoint was written)."""


class PeerFailed(RuntimeError):
    """A collective failed because another process of the DDP group stopped (its error is the
    cause, shown by that process); this rank only says once that it stops too."""


class UserCodeError(Exception):
    """The user's own code (a module in `imports`, a plugin, a builder) raised. The message says
    which; the cause is their exception, whose traceback is shown (it is their code to fix)."""
