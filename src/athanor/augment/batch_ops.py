"""Augmentations as tensor ops on whole batches, on the training device (the memory data path,
and after loading on the DataLoader path).

Each op maps float images [B, C, H, W] in [0, 1] to the same shape (crop and flip, which only
move pixels, take uint8 too: see ``Augmentation.geometric``) and takes every random number from the
batch's ``Draws``: the loaders seed its generator from (seed, epoch, batch index), so a batch is a
pure function of those three numbers, whatever the number of workers or processes or where a
resumed epoch starts. Per-image choices (crop offset, flip, erased box) are drawn for the whole batch at
once: no Python loop over images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from athanor.augment.base import Draws


def _uniform(x: torch.Tensor, draws: Draws, *shape: int) -> torch.Tensor:
    return draws.uniform(x.shape[0], *shape)  # [B, *shape], on x's device


@dataclass(frozen=True)
class RandomCrop:
    """Pad each side by ``padding`` px (reflect or zero), then crop back to H x W at a random
    offset per image: the content moves by up to ``padding`` px in each direction. ``flip``:
    then mirror each crop left-right with that probability (drawn after the offsets, so
    ``RandomCrop(p, mode, flip=0.5)`` gives the images of ``RandomCrop(p, mode)`` followed by
    ``HorizontalFlip(0.5)``). The padded image is not built: each output pixel's source is
    computed (mirrored, or a zero row or column appended to the image) and read in one gather,
    on any dtype."""

    padding: int
    mode: Literal["reflect", "zero"] = "reflect"
    flip: float = 0.0
    geometric: ClassVar[bool] = True  # moves pixels, never changes a value (see Augmentation)

    def __call__(self, x: torch.Tensor, draws: Draws) -> torch.Tensor:
        p = self.padding
        b, c, h, w = x.shape
        dy, dx = (_uniform(x, draws, 2) * (2 * p + 1)).long().clamp_(max=2 * p).unbind(1)
        rows = dy[:, None] - p + torch.arange(h, device=x.device)  # [B, H]: rows of x, or outside
        cols = dx[:, None] - p + torch.arange(w, device=x.device)  # [B, W]
        if self.flip:
            cols = _mirrored(cols, _uniform(x, draws) < self.flip)
        if self.mode == "reflect":  # as F.pad(mode="reflect"): the edge pixel is not repeated
            index = (_reflect(rows, h) * w)[:, :, None] + _reflect(cols, w)[:, None, :]
            return _gather_planes(x, index)
        # zero: a row or column outside the image reads a zero row or column appended to it
        rows = rows.masked_fill((rows < 0) | (rows >= h), h)
        cols = cols.masked_fill((cols < 0) | (cols >= w), w)
        index = (rows * (w + 1))[:, :, None] + cols[:, None, :]
        return _gather_planes(F.pad(x, (0, 1, 0, 1)), index, (h, w))

    def __str__(self) -> str:
        crop = f"random crop (pad {self.padding}, {self.mode})"
        if not self.flip:
            return crop
        return crop + " + horizontal flip" + ("" if self.flip == 0.5 else f" (p={self.flip})")


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror each image left-right with probability ``p`` (a gather: any dtype)."""

    p: float = 0.5
    geometric: ClassVar[bool] = True

    def __call__(self, x: torch.Tensor, draws: Draws) -> torch.Tensor:
        b, _, h, w = x.shape
        cols = _mirrored(torch.arange(w, device=x.device).expand(b, w), _uniform(x, draws) < self.p)
        return _gather_planes(x, torch.arange(h, device=x.device)[:, None] * w + cols[:, None, :])

    def __str__(self) -> str:
        return "horizontal flip"


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Indices in [-n + 1, 2n - 2] mirrored into [0, n - 1] about the edge pixels."""
    return (n - 1) - ((n - 1) - i.abs()).abs()


def _mirrored(cols: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Each row of column indices [B, W] reversed where ``flip`` [B] is set."""
    return torch.where(flip[:, None], cols.flip(1), cols)


def _gather_planes(
    x: torch.Tensor, index: torch.Tensor, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """out[b, c, i, j] = plane_bc[index[b, i, j]] over each flattened image plane, in one gather
    (~6x faster than 4-D advanced indexing); ``size``: the output's (H, W), when not x's own."""
    b, c = x.shape[:2]
    h, w = size or x.shape[-2:]
    flat = index.reshape(b, 1, h * w).expand(b, c, h * w)
    return x.reshape(b, c, -1).gather(2, flat).view(b, c, h, w)


def _fill_boxes(
    x: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    height: torch.Tensor,
    width: torch.Tensor,
    value: float,
) -> torch.Tensor:
    """Set one box per image (all [B] integer tensors; empty boxes leave the image) to value."""
    h, w = x.shape[-2:]
    ys = torch.arange(h, device=x.device)
    xs = torch.arange(w, device=x.device)
    in_y = (ys >= top[:, None]) & (ys < (top + height)[:, None])  # [B, H]
    in_x = (xs >= left[:, None]) & (xs < (left + width)[:, None])  # [B, W]
    mask = in_y[:, None, :, None] & in_x[:, None, None, :]  # [B, 1, H, W]
    return x.masked_fill(mask, value)


@dataclass(frozen=True)
class RandomErasing:
    """torchvision's RandomErasing per image, batched: with probability ``p`` a box covering
    ``scale`` of the area with aspect ratio in ``ratio`` (log-uniform) is set to ``value``. Runs
    after normalization, so value 0 is the data set's mean colour. A box too large for the image
    is clipped to it (torchvision re-draws up to 10 times instead)."""

    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: float = 0.0

    def __call__(self, x: torch.Tensor, draws: Draws) -> torch.Tensor:
        h, w = x.shape[-2:]
        u = _uniform(x, draws, 5)  # [B, 5]: area, ratio, top, left, apply
        area = h * w * (self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 0])
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(lo + (hi - lo) * u[:, 1])
        bh = torch.sqrt(area * aspect).round().clamp(1, h).long()
        bw = torch.sqrt(area / aspect).round().clamp(1, w).long()
        top = ((h - bh + 1) * u[:, 2]).long()
        left = ((w - bw + 1) * u[:, 3]).long()
        apply = (u[:, 4] < self.p).long()  # a zero-height box erases nothing
        return _fill_boxes(x, top, left, bh * apply, bw, self.value)

    def __str__(self) -> str:
        return f"random erasing (p {self.p:g})"


@dataclass(frozen=True)
class Cutout:
    """DeVries & Taylor's cutout: a ``size`` x ``size`` square centred anywhere in the image
    (clipped at the borders) set to ``value``; after normalization, 0 is the mean colour."""

    size: int
    value: float = 0.0

    def __call__(self, x: torch.Tensor, draws: Draws) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Python scalars, not a tensor built from a list: that is a blocking copy to the GPU
        where = _uniform(x, draws, 2)
        cy, cx = (where[:, 0] * h).long(), (where[:, 1] * w).long()
        top, left = cy - self.size // 2, cx - self.size // 2
        side = torch.full_like(top, self.size)
        return _fill_boxes(x, top, left, side, side, self.value)

    def __str__(self) -> str:
        return f"cutout {self.size}px"


@dataclass(frozen=True)
class ColorJitter:
    """Brightness, contrast and saturation jitter per image, batched: each factor is drawn
    uniformly from [1 - s, 1 + s] per image and applied as torchvision's adjust_* do (blend with
    black, with the image's mean grey, with its grey version), in this fixed order, clamped to
    [0, 1]. Hue has no cheap batched form: the policy runs torchvision's ColorJitter per sample
    when hue > 0."""

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4

    def __call__(self, x: torch.Tensor, draws: Draws) -> torch.Tensor:
        signed = (2 * _uniform(x, draws, 3) - 1)[:, :, None, None, None]  # [B, 3], over C, H, W
        # each factor from a Python scalar strength (a tensor of them would be a blocking copy)
        brightness, contrast, saturation = (
            1 + strength * signed[:, i]
            for i, strength in enumerate((self.brightness, self.contrast, self.saturation))
        )
        x = (x * brightness).clamp(0, 1)
        mean = _grey(x).mean(dim=(-3, -2, -1), keepdim=True)  # [B, 1, 1, 1]
        x = ((x - mean) * contrast + mean).clamp(0, 1)
        if x.shape[1] == 3:
            grey = _grey(x)
            x = ((x - grey) * saturation + grey).clamp(0, 1)
        return x

    def __str__(self) -> str:
        return "colour jitter"


def _grey(x: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] luminance with torchvision's rgb_to_grayscale weights (grey stays grey)."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 0.2989 * r + 0.587 * g + 0.114 * b  # torchvision's own expression
