"""Tasks: the TASKS registry (`task=classification|multilabel|regression`). A task says what the
model's outputs mean: how many there are (from the data), what the targets look like, which
losses fit, what its predictions and metrics are, and what a fresh model's loss should be."""

from __future__ import annotations

from athanor.config.groups import TaskOptions
from athanor.registry import Registry

TASKS: Registry = Registry("task", options=TaskOptions)

from athanor.tasks import builtin  # noqa: E402,F401  (registers them)
from athanor.tasks.base import TargetInfo, Task  # noqa: E402

__all__ = ["TASKS", "Task", "TargetInfo"]
