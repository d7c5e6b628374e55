"""Registered augmentation policies. Each builder gets the image size and channel count from the
data (runtime) and returns an ``Augmentation``: tensor ops that run on whole batches on the device
where possible, torchvision ``transforms.v2`` per-sample policies where not (RandAugment & co.,
whose per-image op choice has no batched form); the latter make the runner use the DataLoader
path. Normalization is not an augmentation: it comes from the data config."""

from __future__ import annotations

import logging
from typing import Literal

from athanor.augment.base import Augmentation, BatchOp
from athanor.augment.batch_ops import (
    ColorJitter,
    Cutout,
    HorizontalFlip,
    RandomCrop,
    RandomErasing,
)
from athanor.augment.registry import AUGMENTS
from athanor.errors import ConfigError

log = logging.getLogger(__name__)

PadMode = Literal["reflect", "zero"]


def crop_flip(image_size: int, padding: int, pad_mode: PadMode, flip: bool) -> list[BatchOp]:
    """Random crop with padding + horizontal flip as batch ops, after checking the padding."""
    if padding < 0 or padding >= image_size:
        raise ConfigError(
            f"augment.padding={padding} must be in [0, {image_size - 1}] for "
            f"{image_size}x{image_size} images (a shift of at least the image size leaves nothing)."
        )
    if padding * 4 > image_size:
        log.warning(
            "augment.padding=%d shifts %dx%d images by up to %d%% of their size; the usual is an "
            "eighth (padding=%d).",
            padding,
            image_size,
            image_size,
            100 * padding // image_size,
            max(1, image_size // 8),
        )
    if padding:  # one gather for both (the same images as the two ops in turn)
        return [RandomCrop(padding, pad_mode, flip=0.5 if flip else 0.0)]
    return [HorizontalFlip()] if flip else []


class PerSample:
    """A torchvision v2 transform with a readable name (for the log)."""

    def __init__(self, name: str, transform):
        self.name, self.transform = name, transform

    def __call__(self, image):
        return self.transform(image)

    def __str__(self) -> str:
        return self.name


@AUGMENTS.register("none")
def none(*, image_size: int, channels: int) -> Augmentation:
    """No augmentation (normalization still comes from the data config)."""
    del image_size, channels
    return Augmentation()


@AUGMENTS.register("mixup")
def mixup(*, image_size: int, channels: int) -> Augmentation:
    """Mixup only (augment.mixup_alpha; soft targets); with a policy: augment=cifar augment.mixup_alpha=0.2."""
    del image_size, channels
    return Augmentation()


@AUGMENTS.register("cutmix")
def cutmix(*, image_size: int, channels: int) -> Augmentation:
    """CutMix only (augment.cutmix_alpha; soft targets); with a policy: augment=cifar augment.cutmix_alpha=1.0."""
    del image_size, channels
    return Augmentation()


@AUGMENTS.register("cifar")
def cifar(
    *,
    image_size: int,
    channels: int,
    padding: int = 4,
    pad_mode: PadMode = "reflect",
    flip: bool = True,
    cutout: int = 0,
) -> Augmentation:
    """Random crop with padding (4 px) + horizontal flip [+ cutout], batched on the device."""
    del channels
    if not 0 <= cutout <= image_size:
        raise ConfigError(f"augment.cutout={cutout} must be in [0, {image_size}] (px; 0 = off).")
    return Augmentation(
        batch_ops=crop_flip(image_size, padding, pad_mode, flip),
        normalized_ops=[Cutout(cutout)] if cutout else [],
    )


@AUGMENTS.register("imagenet")
def imagenet(
    *,
    image_size: int,
    channels: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (0.75, 1.3333),
    flip: bool = True,
    crop_fraction: float = 0.875,
) -> Augmentation:
    """RandomResizedCrop + flip for training; Resize (size / 0.875) + CenterCrop for validation."""
    from torchvision.transforms import v2

    del channels
    if not 0 < crop_fraction <= 1:
        raise ConfigError(f"augment.crop_fraction={crop_fraction} must be in (0, 1].")
    resize = round(image_size / crop_fraction)
    crop = v2.RandomResizedCrop(image_size, scale=tuple(scale), ratio=tuple(ratio), antialias=True)
    val = v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(image_size)])
    return Augmentation(
        batch_ops=[HorizontalFlip()] if flip else [],
        sample_train=PerSample(f"random resized crop {image_size}", crop),
        sample_val=PerSample(f"resize {resize} + centre crop {image_size}", val),
    )


def _policy(
    name: str, transform, image_size: int, padding: int, pad_mode: PadMode, flip: bool
) -> Augmentation:
    return Augmentation(
        batch_ops=crop_flip(image_size, padding, pad_mode, flip),
        sample_train=PerSample(name, transform),
    )


@AUGMENTS.register("autoaugment")
def autoaugment(
    *,
    image_size: int,
    channels: int,
    policy: Literal["imagenet", "cifar10", "svhn"] = "imagenet",
    padding: int = 0,
    pad_mode: PadMode = "reflect",
    flip: bool = True,
) -> Augmentation:
    """AutoAugment (learned policy: imagenet, cifar10 or svhn) per sample [+ crop/flip]."""
    from torchvision.transforms import v2

    del channels
    transform = v2.AutoAugment(v2.AutoAugmentPolicy(policy))
    return _policy(f"AutoAugment ({policy})", transform, image_size, padding, pad_mode, flip)


@AUGMENTS.register("randaugment")
def randaugment(
    *,
    image_size: int,
    channels: int,
    num_ops: int = 2,
    magnitude: int = 9,
    padding: int = 0,
    pad_mode: PadMode = "reflect",
    flip: bool = True,
) -> Augmentation:
    """RandAugment (num_ops random ops at one magnitude) per sample [+ crop/flip]."""
    from torchvision.transforms import v2

    del channels
    transform = v2.RandAugment(num_ops=num_ops, magnitude=magnitude)
    name = f"RandAugment (n {num_ops}, m {magnitude})"
    return _policy(name, transform, image_size, padding, pad_mode, flip)


@AUGMENTS.register("trivialaugment")
def trivialaugment(
    *,
    image_size: int,
    channels: int,
    num_magnitude_bins: int = 31,
    padding: int = 0,
    pad_mode: PadMode = "reflect",
    flip: bool = True,
) -> Augmentation:
    """TrivialAugment Wide (one random op at a random magnitude) per sample [+ crop/flip]."""
    from torchvision.transforms import v2

    del channels
    transform = v2.TrivialAugmentWide(num_magnitude_bins=num_magnitude_bins)
    return _policy("TrivialAugment", transform, image_size, padding, pad_mode, flip)


@AUGMENTS.register("color_jitter")
def color_jitter(
    *,
    image_size: int,
    channels: int,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.0,
    padding: int = 0,
    pad_mode: PadMode = "reflect",
    flip: bool = True,
) -> Augmentation:
    """Random brightness / contrast / saturation, batched on the device (hue > 0: per sample)."""
    from torchvision.transforms import v2

    del channels
    if not 0 <= hue <= 0.5 or min(brightness, contrast, saturation) < 0:
        raise ConfigError(
            f"augment color_jitter: brightness, contrast and saturation must be >= 0 and "
            f"hue={hue} in [0, 0.5]."
        )
    if hue > 0:  # hue rotation has no cheap batched form
        transform = v2.ColorJitter(brightness, contrast, saturation, hue)
        return _policy("colour jitter with hue", transform, image_size, padding, pad_mode, flip)
    jitter = ColorJitter(brightness, contrast, saturation)
    return Augmentation(batch_ops=[*crop_flip(image_size, padding, pad_mode, flip), jitter])


@AUGMENTS.register("random_erasing")
def random_erasing(
    *,
    image_size: int,
    channels: int,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: float = 0.0,
    padding: int = 0,
    pad_mode: PadMode = "reflect",
    flip: bool = True,
) -> Augmentation:
    """Random erasing / cutout of a box per image (value 0 = mean colour), batched on the device."""
    del channels
    if not (0 <= p <= 1 and 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]):
        raise ConfigError(
            f"augment random_erasing: p={p} must be in [0, 1], scale={list(scale)} an increasing "
            f"pair in (0, 1], ratio={list(ratio)} an increasing positive pair."
        )
    erase = RandomErasing(p, (scale[0], scale[1]), (ratio[0], ratio[1]), value)
    return Augmentation(
        batch_ops=crop_flip(image_size, padding, pad_mode, flip), normalized_ops=[erase]
    )
