"""The OPTIMIZERS and SCHEDULERS registries (a leaf module: builders import it).

Optimizer builders receive parameter groups at run time: ``builder(params, *, lr, ...)``.
Schedule builders receive ``optimizer`` and a ``StepPlan`` (the run's length in optimizer steps)
and return a torch LR scheduler stepped once per optimizer step; warmup wraps any of them.
"""

from __future__ import annotations

from athanor.config.groups import ParamGroupOptions, WarmupOptions
from athanor.registry import Registry

OPTIMIZERS: Registry = Registry("optim", runtime=("params",), options=ParamGroupOptions)
SCHEDULERS: Registry = Registry("scheduler", runtime=("optimizer", "plan"), options=WarmupOptions)
