"""Optimizers and learning-rate schedules: the OPTIMIZERS and SCHEDULERS registries
(optim/registry.py) with athanor's builders registered in them."""

from athanor.optim import optimizers, schedulers, timm_optim  # noqa: F401  (registers them)
from athanor.optim.registry import OPTIMIZERS, SCHEDULERS

__all__ = ["OPTIMIZERS", "SCHEDULERS"]
