"""Small models for quick experiments and tests: `mlp` and `simple_cnn`."""

from __future__ import annotations

import math

from torch import nn

from athanor.models.registry import MODELS


@MODELS.register("mlp")
def mlp(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    input_shape: tuple[int, ...] | None = None,
    hidden: list[int] = (256, 128),  # type: ignore[assignment]
    dropout: float = 0.0,
) -> nn.Module:
    """MLP on flattened pixels (or any tensor input): Linear-ReLU(-Dropout) per hidden layer."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape) if input_shape else in_channels * image_size * image_size
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


@MODELS.register("simple_cnn")
def simple_cnn(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    width: int = 32,
    depth: int = 2,
    dropout: float = 0.0,
) -> nn.Module:
    """VGG-style CNN: `depth` stages of 2x (3x3 conv-BN-ReLU) + 2x2 max-pool."""
    del image_size  # global pooling makes the head independent of the input size
    layers: list[nn.Module] = []
    c = in_channels
    for stage in range(depth):
        out = width * 2**stage
        layers += [_conv_block(c, out), _conv_block(out, out), nn.MaxPool2d(2, ceil_mode=True)]
        c = out
    layers += [
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(c, num_classes),
    ]
    return nn.Sequential(*layers)
