"""Preemption and Ctrl-C: SIGTERM / SIGUSR1 / SIGINT ask the run to stop after the current step
(it then writes a checkpoint and a summary that says ``interrupted``, and exits 130).

Any number of them, at any moment, is one request: a handler is installed for the life of the
command (``StopSignals.install``, before any work) and shared by everything under it
(``StopSignals.watch``: the run, the DDP launcher, each worker), so a signal never takes the
default action that kills the process halfway through a checkpoint or a summary. A second SIGINT
raises KeyboardInterrupt once (exit at once), only where the run allows it (``escalating``: the
training loop, once a checkpoint is on disk) and never inside a ``shielded`` section (a checkpoint
save: it is finished first).
A handler that was installed before ours (submitit's SIGUSR1 requeue) is called once the run has
saved and written its summary (``forward``)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from typing import ClassVar

log = logging.getLogger(__name__)

SIGNALS = ("SIGTERM", "SIGUSR1", "SIGINT")


def _say(message: str, *args: object) -> None:
    """A warning from the signal handler, written by a short-lived thread. The handler runs
    wherever the main thread was interrupted, also inside a write to the log file (a write
    that returns EINTR runs pending handlers): logging to that file again from the handler
    raised "reentrant call inside BufferedWriter" and printed logging's own traceback. The
    thread waits for the interrupted write's lock, then writes (it is joined at exit)."""
    threading.Thread(target=log.warning, args=(message, *args), name="athanor-signal-log").start()


class StopSignals:
    """The stop request of this process: ``requested`` once any stop signal came."""

    _current: ClassVar[StopSignals | None] = None  # the instance whose handler is installed

    def __init__(self, *, escalate: bool = True) -> None:
        self.requested = False
        self.received: int | None = None  # the first stop signal
        self.sigints = 0
        self._escalate = escalate  # may a second SIGINT raise KeyboardInterrupt now
        self._may_cut: Callable[[], bool] = lambda: True
        self._shield = 0  # inside a save: a second SIGINT waits for its end
        self._pending = False  # a second SIGINT came inside the shield
        self._during_save = False  # a signal came inside the shield (said once)
        self._raised = False  # KeyboardInterrupt is raised once: the unwinding is never cut
        self._previous: dict[int, object] = {}

    @classmethod
    def install(cls) -> StopSignals:
        """The command's handler, for the rest of the process (never uninstalled: a signal
        during the exit must not kill a process that is writing its last files)."""
        if cls._current is None and cls(escalate=False).__enter__() is cls._current:
            atexit.register(_ignore_at_exit)
        return cls._current or cls(escalate=False)  # not the main thread: nothing to install

    @classmethod
    @contextlib.contextmanager
    def watch(cls) -> Iterator[StopSignals]:
        """The installed StopSignals, or one installed for the duration (a run started from
        Python, not by the command)."""
        if cls._current is not None:
            yield cls._current
            return
        with cls(escalate=False) as signals:
            yield signals

    def _handle(self, signum: int, frame) -> None:
        first = not self.requested
        self.requested = True
        self.received = self.received or signum
        if signum == signal.SIGINT:
            self.sigints += 1
        name = signal.Signals(signum).name
        if first:
            _say(
                "%s received: finishing the current step, then saving a checkpoint "
                "(Ctrl-C again to exit at once).",
                name,
            )
        if self._shield and not self._during_save:  # said once: the phase shows in the log
            self._during_save = True
            _say("%s received while a checkpoint is being written: it is finished.", name)
        if self.sigints < 2 or signum != signal.SIGINT:
            return
        if not (self._escalate and self._may_cut()):  # stopping is already the quickest way on
            if self.sigints == 2:
                _say("Ctrl-C again: the run is already stopping; it saves first.")
        elif self._shield:
            if not self._pending:
                _say("Ctrl-C again: the checkpoint being written is finished, then exit.")
            self._pending = True
        else:
            self._interrupt()

    def _interrupt(self) -> None:
        if not self._raised:
            self._raised = True
            raise KeyboardInterrupt  # second Ctrl-C: stop now

    @contextlib.contextmanager
    def escalating(self, when: Callable[[], bool] = lambda: True) -> Iterator[None]:
        """Within: a second Ctrl-C exits at once if ``when()`` (the training loop, once a
        checkpoint is on disk: a step or a validation may be long, and the cut loses only the
        steps since). Outside, and before the first checkpoint, it ends as a stop request."""
        previous = self._escalate, self._may_cut
        self._escalate, self._may_cut = True, when
        try:
            yield
        finally:
            self._escalate, self._may_cut = previous

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """Within (a checkpoint save): no KeyboardInterrupt; a second Ctrl-C that came meanwhile
        is raised at the end, once the file is complete."""
        self._shield += 1
        try:
            yield
        finally:
            self._shield -= 1
        if self._pending and not self._shield and self._escalate:
            self._pending = False
            self._interrupt()

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for name in SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)
            self._outer, StopSignals._current = StopSignals._current, self
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if StopSignals._current is self:
            StopSignals._current = self._outer

    def forward(self) -> None:
        """Hand the stop signal on to the handler it replaced, now that the checkpoint and the
        summary are written: submitit's SIGUSR1 handler requeues a timed-out job (and exits).
        SIGINT is never forwarded (Python's own handler would only raise KeyboardInterrupt)."""
        previous = self._previous.get(self.received) if self.received else None
        if self.received == signal.SIGINT or not callable(previous):
            return
        log.info(
            "passing %s on to the handler installed before athanor's",
            signal.Signals(self.received).name,
        )
        previous(self.received, None)


def signal_name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum else "a stop signal"


def _ignore_at_exit() -> None:
    """The exit code is decided: stop signals from here on are ignored. Python's finalization
    resets every handler it installed to the default action (a SIGTERM then kills the process
    with 143, whatever it was about to return) but leaves an ignored signal ignored."""
    for name in SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)
