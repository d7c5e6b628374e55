"""Registered augmentation policies."""

from __future__ import annotations

from athanor.augment import AUGMENTS
from athanor.augment.base import Augmentation


@AUGMENTS.register("none")
def none(*, image_size: int, channels: int) -> Augmentation:
    """No augmentation (normalization still comes from the data config)."""
    del image_size, channels
    return Augmentation()
