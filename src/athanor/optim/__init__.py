"""Optimizers and learning-rate schedules: the OPTIMIZERS and SCHEDULERS registries.

Optimizer builders receive parameter groups at run time: ``builder(params, *, lr, ...)``.
Schedule builders receive ``optimizer``, ``total_steps`` and ``steps_per_epoch`` (optimizer steps)
and return a torch LRScheduler stepped once per optimizer step; warmup wraps any of them.
"""

from __future__ import annotations

from athanor.registry import Registry

OPTIMIZERS: Registry = Registry("optim", runtime=("params",), shared=("no_decay", "lr_mult"))
SCHEDULERS: Registry = Registry(
    "scheduler",
    runtime=("optimizer", "total_steps", "steps_per_epoch"),
    shared=("warmup_epochs", "warmup_steps", "warmup_start_factor", "monitor", "mode"),
)

from athanor.optim import optimizers, schedulers  # noqa: E402,F401  (registers the builders)

__all__ = ["OPTIMIZERS", "SCHEDULERS"]
