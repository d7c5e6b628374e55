"""The TASKS registry (a leaf module: builders import it). A task says what the model's outputs
mean: how many there are (from the data), what the targets look like, which losses fit, what its
predictions and metrics are, and what a fresh model's loss should be."""

from __future__ import annotations

from athanor.config.groups import TaskOptions
from athanor.registry import Contract, Registry
from athanor.tasks.base import Task

TASKS: Registry = Registry(
    "task",
    options=TaskOptions,
    returns=Contract("an athanor Task", lambda built: isinstance(built, Task)),
)
