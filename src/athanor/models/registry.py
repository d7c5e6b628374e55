"""The MODELS registry (a leaf module: builders import it, nothing here imports them).

Builders receive the data's shape at run time:
``builder(*, num_classes, in_channels, image_size, **config kwargs) -> nn.Module``; a builder
that names ``input_shape`` also gets one item's shape (plain Datasets; None for built-in sets)."""

from __future__ import annotations

from torch import nn

from athanor.config.groups import ModelOptions
from athanor.registry import Contract, Registry

MODELS: Registry = Registry(
    "model",
    runtime=("num_classes", "in_channels", "image_size", "input_shape"),
    options=ModelOptions,
    returns=Contract("an nn.Module", lambda built: isinstance(built, nn.Module)),
)


def model_label(spec: dict) -> str:
    """How logs name a model: its arch for the zoo wrappers (`convnext_tiny (timm)`), else its
    registered name. The run folder's name uses the same arch (conf/train.yaml `name:`)."""
    arch = spec.get("arch")
    return f"{arch} ({spec['name']})" if arch else str(spec["name"])
