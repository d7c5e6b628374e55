"""The OPTIMIZERS and SCHEDULERS registries (a leaf module: builders import it).

Optimizer builders receive parameter groups at run time: ``builder(params, *, lr, ...)``.
Schedule builders receive ``optimizer`` and a ``StepPlan`` (the run's length in optimizer steps)
and return a torch LR scheduler stepped once per optimizer step; warmup wraps any of them.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from athanor.config.groups import ParamGroupOptions, WarmupOptions
from athanor.registry import Contract, Registry

OPTIMIZERS: Registry = Registry(
    "optim",
    runtime=("params",),
    options=ParamGroupOptions,
    returns=Contract("a torch.optim.Optimizer", lambda built: isinstance(built, Optimizer)),
)
SCHEDULERS: Registry = Registry(
    "scheduler",
    runtime=("optimizer", "plan"),
    options=WarmupOptions,
    returns=Contract(
        "a torch LRScheduler, or None for a constant rate",
        lambda built: built is None or isinstance(built, LRScheduler),
    ),
)
