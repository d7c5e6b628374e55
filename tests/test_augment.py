"""Augmentations: every policy builds and transforms real batches; the batched tensor ops do what
their names say (checked against torch.flip and shifted windows); batches are a pure function of
the seed; validation is never augmented; mixup/cutmix give soft targets that sum to one."""

from __future__ import annotations

import logging

import pytest
import torch

from athanor.augment import AUGMENTS
from athanor.augment.base import Draws, MixOptions
from athanor.augment.batch_ops import ColorJitter, Cutout, HorizontalFlip, RandomCrop, RandomErasing
from athanor.augment.mixing import build_mixer
from athanor.data.pipeline import build_loaders
from athanor.distributed import Dist
from athanor.engine.build import build_augmentation, build_data
from athanor.errors import ConfigError
from conftest import FAST, compose

SMALL = ("data=fake", "data.num_train=32", "data.num_val=16", "data.image_size=16")
SMALL += ("data.batch_size=8",)


def loaders(*overrides: str, seed: int = 0):
    config = compose(*SMALL, *overrides)
    bundle, options = build_data(config)
    augmentation, mix = build_augmentation(config, bundle)
    mixer = build_mixer(mix, bundle.num_classes)
    built = build_loaders(
        bundle, options, augmentation, mixer, seed=seed, d=Dist(), device=torch.device("cpu")
    )
    return bundle, built


def first(loader, epoch: int = 0):
    return next(iter(loader.epoch(epoch)))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def draws(seed: int) -> Draws:
    return Draws(gen(seed))


PER_SAMPLE = {"autoaugment", "randaugment", "trivialaugment", "imagenet"}  # no batched form


@pytest.mark.parametrize("name", AUGMENTS.names())
def test_every_augmentation_transforms_a_training_batch(name):
    bundle, built = loaders(f"augment={name}")
    batch = first(built.train)
    assert batch.inputs.shape == (8, 3, 16, 16) and batch.inputs.dtype == torch.float32
    assert torch.isfinite(batch.inputs).all()
    # inputs are normalized: undo it and the pixels are back in [0, 1] (an erased box holds the
    # mean colour, a mixed image is a convex combination: both stay inside)
    mean = torch.tensor(bundle.mean).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std).view(1, -1, 1, 1)
    pixels = batch.inputs * std + mean
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    soft = name in ("mixup", "cutmix")
    assert batch.targets.shape == ((8, 10) if soft else (8,))
    assert built.path == ("torch" if name in PER_SAMPLE else "memory")
    if name != "none":  # every real augmentation changes the training batch
        plain = first(loaders("augment=none")[1].train)
        assert torch.equal(batch.labels, plain.labels) and not torch.equal(
            batch.inputs, plain.inputs
        )


@pytest.mark.parametrize("name", ["cifar", "random_erasing", "randaugment", "color_jitter"])
def test_validation_batches_are_never_augmented(name):
    bundle, built = loaders(f"augment={name}")
    plain = first(loaders("augment=none")[1].val)
    batch = first(built.val)
    assert torch.equal(batch.inputs, plain.inputs) and torch.equal(batch.labels, plain.labels)
    expected = (bundle.val.images[:8].float() / 255 - 0.5) / 0.25  # fake: mean 0.5, std 0.25
    assert torch.allclose(batch.inputs, expected, atol=1e-6)


def test_imagenet_validation_is_the_deterministic_resize_and_centre_crop():
    bundle, a = loaders("augment=imagenet", seed=0)
    _, b = loaders("augment=imagenet", seed=5)
    val = first(a.val)
    assert torch.equal(val.inputs, first(b.val).inputs)
    aug = AUGMENTS.build({"name": "imagenet"}, image_size=16, channels=3)
    expected = torch.stack([aug.sample_val(img) for img in bundle.val.images[:8]])
    assert torch.allclose(val.inputs, (expected.float() / 255 - 0.5) / 0.25, atol=1e-6)


def test_crop_and_flip_batches_are_a_function_of_the_seed():
    a = first(loaders("augment=cifar", "augment.padding=2", seed=1)[1].train)
    b = first(loaders("augment=cifar", "augment.padding=2", seed=1)[1].train)
    c = first(loaders("augment=cifar", "augment.padding=2", seed=2)[1].train)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.inputs, c.inputs)
    # and the next epoch's batch differs from this one
    _, built = loaders("augment=cifar", "augment.padding=2", seed=1)
    assert not torch.equal(first(built.train, epoch=1).inputs, a.inputs)


def test_flip_mirrors_exactly_the_chosen_images():
    x = torch.rand(64, 3, 5, 7)
    out = HorizontalFlip(0.5)(x, draws(0))
    flipped = (out == torch.flip(x, dims=[-1])).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert (flipped | kept).all() and 10 < flipped.sum() < 54
    assert torch.equal(HorizontalFlip(1.0)(x, draws(0)), torch.flip(x, dims=[-1]))
    assert torch.equal(HorizontalFlip(0.0)(x, draws(0)), x)


@pytest.mark.parametrize("mode", ["zero", "reflect"])
def test_padded_crop_shifts_the_content(mode):
    x = torch.rand(32, 2, 8, 8)
    p = 2
    out = RandomCrop(p, mode)(x, draws(3))
    pad = "constant" if mode == "zero" else "reflect"
    padded = torch.nn.functional.pad(x, (p, p, p, p), mode=pad)
    shifts = set()
    for i in range(len(x)):
        windows = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8])
        ]
        assert windows, f"image {i} is not a shifted window of its padded original"
        shifts.add(windows[0])
    assert len(shifts) > 5, "offsets should vary from image to image"
    assert (2, 2) in shifts or len(shifts) < 25  # the unshifted window is one of the options


@pytest.mark.parametrize("mode", ["zero", "reflect"])
def test_one_gather_crops_and_flips_as_the_two_ops_do_on_any_dtype(mode):
    x = torch.randint(0, 256, (32, 3, 9, 7), dtype=torch.uint8)
    fused = RandomCrop(3, mode, flip=0.5)(x, draws(4))
    both = draws(4)  # the fused op draws the offsets, then the flips, from one stream
    assert torch.equal(fused, HorizontalFlip(0.5)(RandomCrop(3, mode)(x, both), both))
    assert fused.dtype == torch.uint8
    # crop and flip only move pixels: uint8 in, the float images' values out
    assert torch.equal(fused.float(), RandomCrop(3, mode, flip=0.5)(x.float(), draws(4)))
    assert torch.equal(
        HorizontalFlip(0.5)(x, draws(1)).float(), HorizontalFlip(0.5)(x.float(), draws(1))
    )


def test_geometric_training_batches_match_the_float_pipeline():
    # augment=cifar crops and flips uint8 images, then standardizes: the values of cropping
    # and flipping the [0, 1] floats and standardizing those, to float rounding
    bundle, built = loaders("augment=cifar", "augment.padding=2", seed=2)
    assert built.train.device_batches.augmentation.geometric
    batch = first(built.train)
    idx = next(iter(built.train.order.batches(0)))
    ops = built.train.device_batches.augmentation
    crop = ops.apply_batch(
        bundle.train.images[idx].float() / 255, built.train.device_batches.draws(0, 0, (0, 0))
    )
    expected = (crop - 0.5) / 0.25  # fake: mean 0.5, std 0.25
    assert torch.allclose(batch.inputs, expected, atol=1e-6)


def test_erasing_and_cutout_set_boxes_to_the_value():
    x = torch.rand(16, 3, 12, 12) + 1  # > 1 everywhere: erased pixels are the only zeros
    erased = RandomErasing(p=1.0)(x, draws(0))
    per_image = (erased == 0).all(1).flatten(1).sum(1)  # erased pixels per image, all channels
    assert (per_image > 0).all() and (per_image <= 0.34 * 144 + 12).all()
    assert torch.equal(RandomErasing(p=0.0)(x, draws(0)), x)
    cut = Cutout(4)(x, draws(1))
    holes = (cut == 0).all(1).flatten(1).sum(1)
    assert (holes <= 16).all() and (holes > 0).all()
    assert ((cut == x) | (cut == 0)).all()


@pytest.mark.parametrize("which", [0, 1, 2])
def test_batched_colour_jitter_matches_torchvision_adjust(which):
    from torchvision.transforms.v2 import functional as F

    adjust = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation][which]
    strengths = [0.0, 0.0, 0.0]
    strengths[which] = 0.5
    x = torch.rand(6, 3, 8, 8)
    out = ColorJitter(*strengths)(x, draws(4))
    factors = 1 + 0.5 * (2 * torch.rand(6, 3, generator=gen(4))[:, which] - 1)
    for i in range(6):
        assert torch.allclose(out[i], adjust(x[i], factors[i].item()), atol=1e-5)
    assert not torch.allclose(out, x)


def test_cifar_cutout_runs_after_normalization_at_the_mean_colour():
    _, built = loaders(
        "augment=cifar", "augment.cutout=8", "augment.padding=0", "augment.flip=false"
    )
    batch = first(built.train)
    assert ((batch.inputs == 0).all(1).flatten(1).sum(1) > 0).all()


@pytest.mark.parametrize("alphas", [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixing_gives_soft_targets_that_sum_to_one(alphas):
    mixer = build_mixer(MixOptions(mixup_alpha=alphas[0], cutmix_alpha=alphas[1]), 5)
    x = torch.rand(16, 3, 8, 8)
    labels = torch.arange(16) % 5
    mixed, targets = mixer(x, labels, gen(0))
    assert targets.shape == (16, 5) and torch.allclose(targets.sum(1), torch.ones(16))
    assert ((targets > 0) & (targets < 1)).any(), "some targets must be soft"
    assert targets.argmax(1).eq(labels).float().mean() >= 0.5 or alphas[1] > 0
    again = mixer(x, labels, gen(0))
    assert torch.equal(again[0], mixed) and torch.equal(again[1], targets)
    if alphas == (0.4, 0.0):  # mixup: each image is lam * itself + (1 - lam) * its neighbour
        lam = targets[1, labels[1]].item()  # image 1 (class 1) mixed with image 0 (class 0)
        assert 0 < lam < 1 and targets[1, labels[0]].item() == pytest.approx(1 - lam)
        assert torch.allclose(mixed[1], lam * x[1] + (1 - lam) * x[0], atol=1e-5)


def test_mix_prob_zero_leaves_the_batch_alone():
    mixer = build_mixer(MixOptions(mixup_alpha=1.0, mix_prob=0.0), 3)
    assert mixer is None
    off = build_mixer(MixOptions(mixup_alpha=1.0, mix_prob=1e-9), 3)
    x, labels = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    same, targets = off(x, labels, gen(0))
    assert torch.equal(same, x) and torch.equal(targets, torch.eye(3)[labels])


def test_padding_larger_than_the_image_is_refused_and_large_padding_warned(caplog):
    with pytest.raises(ConfigError, match="augment.padding=8"):
        AUGMENTS.build({"name": "cifar", "padding": 8}, image_size=8, channels=1)
    with caplog.at_level(logging.WARNING):
        AUGMENTS.build({"name": "cifar", "padding": 4}, image_size=8, channels=1)
    assert "shifts 8x8 images by up to 50%" in caplog.text


def test_imagenet_validation_resizes_and_centre_crops():
    aug = AUGMENTS.build({"name": "imagenet"}, image_size=16, channels=3)
    image = torch.randint(0, 256, (3, 30, 40), dtype=torch.uint8)
    assert aug.sample_val(image).shape == (3, 16, 16)
    assert aug.sample_train(image).shape == (3, 16, 16)


def test_cifar_augment_trains_end_to_end_on_the_memory_path(train):
    result = train(
        *SMALL, "augment=cifar", "trainer.max_steps=3", "logger.tensorboard=false", *FAST
    )
    log = (result.run_dir / "train.log").read_text()
    assert "data path: memory" in log and "random crop (pad 4, reflect) + horizontal flip" in log
    assert result.summary()["status"] == "completed" and result.summary()["steps"] == 3


def test_randaugment_falls_back_to_the_dataloader_path_and_says_so(train):
    result = train(
        *SMALL, "augment=randaugment", "trainer.max_steps=2", "logger.tensorboard=false", *FAST
    )
    log = (result.run_dir / "train.log").read_text()
    assert "the augmentation runs per sample (RandAugment (n 2, m 9)); using the DataLoader" in log
    assert "data path: torch" in log and result.summary()["steps"] == 2
