"""Augmentations: the AUGMENTS registry (augment/registry.py) with athanor's policies registered
in it."""

from athanor.augment import policies  # noqa: F401  (registers them)
from athanor.augment.base import Augmentation, MixOptions
from athanor.augment.registry import AUGMENTS

__all__ = ["AUGMENTS", "Augmentation", "MixOptions"]
