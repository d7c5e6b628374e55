"""Exponential moving average of the weights, kept in torch's ``swa_utils.AveragedModel`` (its
state_dict is what checkpoints, `evaluate --ema` and `athanor export --ema` read)."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class Ema:
    """EMA copy of the model, updated every ``every`` optimizer steps. With ``warmup`` the decay is
    min(decay, (1 + n) / (10 + n)) after n updates, so early averages are not dominated by the
    random initialization (the timm / TF convention).

    The update is written here rather than ``AveragedModel.update_parameters``, which moves its
    CPU counter to the GPU and reads it back on every update: two device syncs a step, which
    stall the CPU until the GPU has caught up. The counter stays ``n_averaged`` on the CPU."""

    def __init__(self, model: nn.Module, decay: float, *, every: int = 1, warmup: bool = True):
        self.decay, self.every, self.warmup = decay, every, warmup
        # use_buffers: BatchNorm running stats are averaged too, so the EMA model is evaluable
        self.module = AveragedModel(model, use_buffers=True)
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        if step % self.every != 0:
            return
        averaged = [*self.model.parameters(), *self.model.buffers()]
        current = [t.detach() for t in (*model.parameters(), *model.buffers())]
        n = int(self.module.n_averaged)  # a CPU tensor: no device sync
        if n == 0:
            torch._foreach_copy_(averaged, current)
        else:
            d = min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay
            pairs = list(zip(averaged, current, strict=True))
            floats = [pair for pair in pairs if pair[0].is_floating_point()]
            # integer buffers (BatchNorm's num_batches_tracked): counters, not averaged
            counters = [pair for pair in pairs if not pair[0].is_floating_point()]
            if floats:
                torch._foreach_lerp_(*map(list, zip(*floats, strict=True)), 1.0 - d)
            if counters:
                torch._foreach_copy_(*map(list, zip(*counters, strict=True)))
        self.module.n_averaged += 1

    @property
    def model(self) -> nn.Module:
        return self.module.module

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
