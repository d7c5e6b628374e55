"""`airbench`: the small fast CIFAR network of Keller Jordan's airbench94 (94% CIFAR-10 in a few
seconds on one A100), for `experiment=cifar10_fast`.

Shape: a 2x2 stem conv (2*C*4 channels, GELU) shrinks 32x32 to 31x31, then three groups of
conv -> max-pool 2 -> BN -> GELU -> conv -> BN -> GELU (widths 64, 256, 256; 31 -> 15 -> 7 -> 3),
a global max-pool, a bias-free linear head and logits scaled by 1/9. Convs start as identity
(Dirac) on their first channels, an implicit residual that makes the plain stack train like a
ResNet; BatchNorm scales are frozen at 1 (only shifts learn). The airbench tricks that need the
training data (whitened stem initialization, lookahead EMA) are left out: the stem here learns.
"""

from __future__ import annotations

import torch
from torch import nn

from athanor.models.registry import MODELS


class Conv(nn.Conv2d):
    """3x3 'same' conv, no bias, identity-initialized on the first ``in_channels`` outputs."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, padding="same", bias=False):
        super().__init__(c_in, c_out, kernel_size=kernel_size, padding=padding, bias=bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        nn.init.dirac_(w[: w.size(1)])


def _norm(channels: int, momentum: float) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, eps=1e-12, momentum=momentum)
    bn.weight.requires_grad_(False)  # scale fixed at 1: only the shift is learned
    return bn


class ConvGroup(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, bn_momentum: float):
        super().__init__(
            Conv(c_in, c_out),
            nn.MaxPool2d(2),
            _norm(c_out, bn_momentum),
            nn.GELU(),
            Conv(c_out, c_out),
            _norm(c_out, bn_momentum),
            nn.GELU(),
        )


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


@MODELS.register("airbench")
def airbench(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    widths: list[int] = (64, 256, 256),  # type: ignore[assignment]
    stem_kernel: int = 2,
    bn_momentum: float = 0.4,
    logit_scale: float = 0.1111,
) -> nn.Module:
    """airbench94's small CIFAR network (~2 M params at widths 64/256/256)."""
    del image_size  # global pooling: tuned for 32x32, any size runs
    stem = 2 * in_channels * stem_kernel**2
    layers: list[nn.Module] = [
        Conv(in_channels, stem, kernel_size=stem_kernel, padding=0, bias=True),
        nn.GELU(),
    ]
    c = stem
    for width in widths:
        layers.append(ConvGroup(c, width, bn_momentum))
        c = width
    layers += [
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(c, num_classes, bias=False),
        Scale(logit_scale),
    ]
    return nn.Sequential(*layers)
