"""Process age: seconds since this process started (start-up time of a run, for the log and the
benchmarks). Linux reads the kernel's start time, so the interpreter's own start-up counts too."""

from __future__ import annotations

import os
import time

_IMPORTED = time.monotonic()  # fallback origin where /proc is missing


def process_start() -> float | None:
    """When this process started, in CLOCK_BOOTTIME seconds (Linux), or None elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime in clock ticks
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def process_age() -> float:
    """Seconds since the process started (since athanor was imported where /proc is missing)."""
    start = process_start()
    if start is None:
        return time.monotonic() - _IMPORTED
    return time.clock_gettime(time.CLOCK_BOOTTIME) - start
