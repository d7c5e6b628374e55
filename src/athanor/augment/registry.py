"""The AUGMENTS registry (a leaf module: builders import it). A builder returns an
``Augmentation``: tensor ops run on whole batches on the device, plus optional per-sample
torchvision transforms (DataLoader path). Batch-level mixing (mixup/cutmix) is configured by the
group-wide keys in ``MixOptions``."""

from __future__ import annotations

from athanor.augment.base import Augmentation, MixOptions
from athanor.registry import Contract, Registry

AUGMENTS: Registry = Registry(
    "augment",
    runtime=("image_size", "channels"),
    options=MixOptions,
    returns=Contract("an athanor Augmentation", lambda built: isinstance(built, Augmentation)),
)
