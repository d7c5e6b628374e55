"""Losses: the LOSSES registry (losses/registry.py) with athanor's losses (losses/builtin.py)
registered in it."""

from athanor.losses.builtin import (
    INDEX_ONLY,
    PENALTIES,
    WeightedSum,
    build_loss,
    check_class_lengths,
    check_penalties,
    check_soft_targets,
)
from athanor.losses.registry import LOSSES

__all__ = [
    "INDEX_ONLY",
    "LOSSES",
    "PENALTIES",
    "WeightedSum",
    "build_loss",
    "check_class_lengths",
    "check_penalties",
    "check_soft_targets",
]
