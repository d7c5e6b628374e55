"""Exponential moving average of the weights (torch's ``swa_utils.AveragedModel``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class Ema:
    """EMA copy of the model, updated every ``every`` optimizer steps. With ``warmup`` the decay is
    min(decay, (1 + n) / (10 + n)) after n updates, so early averages are not dominated by the
    random initialization (the timm / TF convention)."""

    def __init__(self, model: nn.Module, decay: float, *, every: int = 1, warmup: bool = True):
        self.decay, self.every, self.warmup = decay, every, warmup

        def lerp(averaged: list, current: list, num_averaged) -> None:
            n = int(num_averaged)
            d = min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay
            if averaged[0].is_floating_point():
                torch._foreach_lerp_(averaged, current, 1.0 - d)
            else:  # integer buffers (BatchNorm's num_batches_tracked): counters, not averaged
                torch._foreach_copy_(averaged, current)

        # use_buffers: BatchNorm running stats are averaged too, so the EMA model is evaluable
        self.module = AveragedModel(model, multi_avg_fn=lerp, use_buffers=True)
        self.module.requires_grad_(False)

    def update(self, model: nn.Module, step: int) -> None:
        if step % self.every == 0:
            self.module.update_parameters(model)

    @property
    def model(self) -> nn.Module:
        return self.module.module

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
