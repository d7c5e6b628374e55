"""Tasks (`task=classification|multilabel|regression`): the TASKS registry (tasks/registry.py)
with athanor's tasks registered in it."""

from athanor.tasks import builtin  # noqa: F401  (registers them)
from athanor.tasks.base import TargetInfo, Task
from athanor.tasks.registry import TASKS

__all__ = ["TASKS", "Task", "TargetInfo"]
