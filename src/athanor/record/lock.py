"""The run folder's lock: ``<run>/.lock`` says which process writes the run (pid, host, start
time, command) for as long as it runs. Creating it with O_EXCL is the claim, so two processes
can never both write one run; a lock whose process is gone (a dead PID on this host, e.g. after
kill -9) is taken over with one warning line."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from athanor.errors import ConfigError

log = logging.getLogger("athanor")

LOCK_NAME = ".lock"


def _alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def read_holder(path: Path) -> dict[str, Any]:
    """What a lock file says (empty when it is unreadable or torn)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def describe(holder: dict[str, Any]) -> str:
    return (
        f"PID {holder.get('pid', '?')} on {holder.get('host', '?')}, since "
        f"{holder.get('started', '?')}: {holder.get('command', '?')}"
    )


def _stale(holder: dict[str, Any]) -> bool:
    """A lock is stale when its process is known dead: same host, PID gone. A torn lock file
    (its writer died mid-write) is stale too. Another host's lock is never judged from here."""
    if not holder:
        return True
    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)


def _refusal(folder: Path, holder: dict[str, Any]) -> ConfigError:
    gone = (
        "If that process is gone (another host's lock cannot be checked from here), delete "
        f"{folder / LOCK_NAME}."
    )
    if holder.get("what") == "sweep":
        return ConfigError(
            f"The sweep folder {folder} is in use by another sweep ({describe(holder)}); two "
            "sweeps in one folder would run the same jobs. Wait for it to end (the same command "
            "then resumes what it left and skips what it completed), or give this sweep another "
            f"hydra.sweep.dir. {gone}"
        )
    return ConfigError(
        f"The run folder {folder} is in use by another process ({describe(holder)}). Wait for "
        "it to end, or start a new run (without hydra.run.dir= or resume= pointing here). "
        f"{gone}"
    )


def check_free(folder: Path) -> None:
    """Raise ConfigError naming the holder when a live process holds ``folder``'s lock; writes
    nothing (checked before the other refusals, which would hide that the run is in use)."""
    path = folder / LOCK_NAME
    if path.is_file() and not _stale(holder := read_holder(path)):
        raise _refusal(folder, holder)


def _link_new(path: Path, holder: dict[str, Any]) -> bool:
    """Create ``path`` holding ``holder``, whole or not at all: the content goes into a temp file
    that is hard-linked into place (link fails when the name exists), so no reader ever sees an
    empty lock. False when the lock exists."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(holder) + "\n")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class RunLock:
    """The held lock of one run folder; ``release`` removes it (only if it is still ours)."""

    path: Path
    pid: int

    @classmethod
    def acquire(cls, folder: Path, command: str | None = None, what: str = "run") -> RunLock:
        """Create ``<folder>/.lock`` exclusively. Raises ConfigError naming the holder when a
        live process holds it; takes a stale one over with a warning. ``what`` (run, sweep)
        names the holder in another process's refusal."""
        path = folder / LOCK_NAME
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": command or " ".join(sys.argv),
            "what": what,
        }
        for _ in range(3):  # a stale lock removed by another process at the same time: retry
            if _link_new(path, holder):
                return cls(path, os.getpid())
            old = read_holder(path)
            if not _stale(old):
                raise _refusal(folder, old)
            log.warning("Taking over the stale lock of %s (%s).", folder, describe(old))
            path.unlink(missing_ok=True)
        raise ConfigError(f"Could not take the lock {path}: it keeps coming back.")

    def release(self) -> None:
        """Remove the lock when this process still holds it (a forked child never does)."""
        if os.getpid() != self.pid or read_holder(self.path).get("pid") != self.pid:
            return
        try:
            self.path.unlink()
        except OSError as err:  # the run's folder was discarded already, or became read-only
            if err.errno != errno.ENOENT:
                log.warning("Could not remove the lock %s: %s", self.path, err)


def release_dead(folder: Path, pid: int) -> bool:
    """Remove ``folder``'s lock left by ``pid``, a process that was killed (a signal gives it no
    time to remove its own), said by the process that started and waited for it. True when a
    lock was removed."""
    path = folder / LOCK_NAME
    if read_holder(path).get("pid") != pid or _alive(pid):
        return False
    path.unlink(missing_ok=True)
    return True
