"""Preemption: SIGTERM / SIGUSR1 / SIGINT ask the loop to stop after the current step (it then
writes a checkpoint); a second SIGINT exits at once. A handler that was installed before ours
(submitit's SIGUSR1 requeue) is called once the run has saved and written its summary."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)

SIGNALS = ("SIGTERM", "SIGUSR1", "SIGINT")


class StopSignals:
    def __init__(self) -> None:
        self.requested = False
        self.received: int | None = None  # the first stop signal
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.requested = True
        self.received = self.received or signum
        log.warning(
            "%s received: finishing the current step, then saving a checkpoint "
            "(Ctrl-C again to exit at once).",
            name,
        )

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for name in SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

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
