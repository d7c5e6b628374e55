"""Models: the MODELS registry. Builders receive the data's shape at run time:
``builder(*, num_classes, in_channels, image_size, **config kwargs) -> nn.Module``."""

from __future__ import annotations

from athanor.config.groups import ModelOptions
from athanor.registry import Registry

MODELS: Registry = Registry(
    "model",
    runtime=("num_classes", "in_channels", "image_size"),
    options=ModelOptions,
)

from athanor.models import airbench, cifar, simple, vision  # noqa: E402,F401  (registers the builders)

__all__ = ["MODELS"]
