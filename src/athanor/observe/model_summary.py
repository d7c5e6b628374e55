"""The model at a glance: parameters (total / trainable), size in MB, forward FLOPs per sample
(torch's ``FlopCounterMode``) and a table of the top-level modules."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from athanor.data.plain import call_model


def _numel(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class CountingForward:
    """``forward(model, sample)``: the model's output, its FLOPs per module counted on the way
    (torch's ``FlopCounterMode``). A training run's build probes the new model through it
    (models/probe.py) and the summary reads the counts: one single-sample pass serves both,
    where each was a pass of its own (~0.5 s apiece on a busy 2-core machine)."""

    def __init__(self) -> None:
        self.counter: FlopCounterMode | None = None

    def __call__(self, model: nn.Module, sample: Any) -> Any:
        with FlopCounterMode(display=False) as counter:
            out = call_model(model, sample)
        self.counter = counter
        return out

    def summary(self, model: nn.Module) -> dict[str, Any]:
        """The summary of ``model``, the model this forward ran (its FLOPs as counted then)."""
        if self.counter is None:
            raise RuntimeError("CountingForward.summary before the model ran through it")
        tensors = [*model.parameters(), *model.buffers()]
        size_mb = sum(t.numel() * t.element_size() for t in tensors) / 2**20
        per_module = {k: sum(v.values()) for k, v in self.counter.get_flop_counts().items()}
        root = type(model).__name__
        layers = [
            {
                "name": name,
                "type": type(child).__name__,
                "params": _numel(child),
                "flops": per_module.get(f"{root}.{name}", 0),
            }
            for name, child in model.named_children()
        ]
        return {
            "params_total": _numel(model),
            "params_trainable": _numel(model, trainable_only=True),
            "size_mb": round(size_mb, 3),
            "flops_per_sample": self.counter.get_total_flops(),
            "layers": layers,
        }


def summarize(model: nn.Module, sample: Any) -> dict[str, Any]:
    """``sample``: one input with a batch dimension ([1, C, H, W], or a tuple / dict of
    tensors) on the model's device."""
    forward = CountingForward()
    was_training = model.training
    model.eval()  # BatchNorm on a single sample; no running-stat updates
    try:
        with torch.no_grad():
            forward(model, sample)
    finally:
        model.train(was_training)
    return forward.summary(model)


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


def format_summary(name: str, s: dict[str, Any]) -> str:
    """One headline plus a fixed-width table of the top-level modules."""
    lines = [
        f"model {name}: {_human(s['params_total'])} params ({_human(s['params_trainable'])} "
        f"trainable), {s['size_mb']:.2f} MB, {_human(s['flops_per_sample'])}FLOPs per sample",
        f"  {'module':<24} {'type':<20} {'params':>10} {'FLOPs':>10}",
    ]
    for layer in s["layers"]:
        lines.append(
            f"  {layer['name']:<24} {layer['type']:<20} {_human(layer['params']):>10} "
            f"{_human(layer['flops']):>10}"
        )
    return "\n".join(lines)
