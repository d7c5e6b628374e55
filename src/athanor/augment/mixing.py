"""Batch-level mixup / cutmix with soft targets (torchvision.transforms.v2.MixUp / CutMix)."""

from __future__ import annotations

import torch

from athanor.augment.base import MixOptions


def build_mixer(options: MixOptions, num_classes: int):
    """A callable (x, labels, generator) -> (x, soft targets [B, K]), or None when disabled."""
    if not options.enabled:
        return None
    from torchvision.transforms import v2

    choices = []
    if options.mixup_alpha > 0:
        choices.append(v2.MixUp(alpha=options.mixup_alpha, num_classes=num_classes))
    if options.cutmix_alpha > 0:
        choices.append(v2.CutMix(alpha=options.cutmix_alpha, num_classes=num_classes))

    def mix(x: torch.Tensor, labels: torch.Tensor, gen: torch.Generator):
        # v2.MixUp/CutMix draw from the global RNG: seed it from the batch's own seed so batches
        # stay reproducible, without disturbing the training RNG stream. The seed is read on the
        # host (a number drawn on the GPU and read back would be a device sync every batch),
        # mixed with a constant so the draws are not the batch ops' own.
        seed = (gen.initial_seed() * 6364136223846793005 + 1442695040888963407) % 2**63
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            if torch.rand(()) >= options.mix_prob:
                return x, torch.nn.functional.one_hot(labels, num_classes).float()
            use_cutmix = len(choices) == 2 and torch.rand(()) < options.switch_prob
            transform = choices[-1] if use_cutmix else choices[0]
            return transform(x, labels)

    return mix
