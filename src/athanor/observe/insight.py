"""Looking inside training: per-layer gradient statistics, histograms, the augmented image grid,
peak memory, and the first-step sanity checks (initial loss, parameters without gradients)."""

from __future__ import annotations

import logging
import math
import resource
import sys

import torch
from torch import nn

log = logging.getLogger("athanor")


def grad_ratios(model: nn.Module) -> dict[str, float]:
    """mean|grad| / mean|weight| per parameter: ~1e-3 is healthy for SGD-like updates; orders of
    magnitude off points at a dead or exploding layer."""
    out = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        weight = p.detach().abs().mean()
        out[f"grad_ratio/{name}"] = float(p.grad.detach().abs().mean() / weight.clamp(min=1e-12))
    return out


def histograms(tracker, model: nn.Module, step: int) -> None:
    """Weight and gradient histograms, one tag per parameter."""
    for name, p in model.named_parameters():
        tracker.histogram(f"weights/{name}", p, step)
        if p.grad is not None:
            tracker.histogram(f"grads/{name}", p.grad, step)


def image_grid(inputs: torch.Tensor, count: int = 64, pad: int = 2) -> torch.Tensor:
    """A [3, H, W] grid of the first ``count`` training inputs, each rescaled to [0, 1] (the
    inputs are normalized, so per-image min/max is what makes them viewable). The layout of
    torchvision's ``make_grid(normalize=True, scale_each=True)``, without importing torchvision
    (~0.2-0.4 s of start-up that runs without a torchvision model or data set never pay)."""
    x = inputs[:count].detach().float().cpu()
    n, channels, h, w = x.shape
    lo = x.flatten(1).amin(1).view(n, 1, 1, 1)
    hi = x.flatten(1).amax(1).view(n, 1, 1, 1)
    x = (x - lo) / (hi - lo).clamp(min=1e-5)
    if channels == 1:
        x = x.expand(n, 3, h, w)
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = torch.zeros(3, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for i, image in enumerate(x[:, :3]):
        top, left = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        grid[:, top : top + h, left : left + w] = image
    return grid


def peak_memory(device: torch.device) -> dict[str, float]:
    """Peak memory so far in GB: the CUDA allocator's high-water mark, or the process's peak RSS."""
    if device.type == "cuda":
        return {"sys/peak_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    unit = 1 if sys.platform == "darwin" else 1024
    return {"sys/peak_rss_gb": rss * unit / 2**30}


def check_initial_loss(loss: float, expected: float, why: str) -> None:
    """A fresh model's first loss is near what its task predicts (``why``: e.g. "ln(10) for a
    fresh 10-class softmax", from the task). Far from it means a bad initialization,
    unnormalized inputs or a wrong loss/label setup."""
    if not math.isfinite(loss) or abs(loss - expected) > 0.5 * expected:
        log.warning(
            "Initial loss %.3f is far from %.3f, %s: check the input normalization "
            "(data.normalize, data.mean/std), the initialization and the targets.",
            loss,
            expected,
            why,
        )
    else:
        log.info("initial loss %.3f (%.3f expected, %s): ok", loss, expected, why)


def unused_parameters(model: nn.Module) -> list[str]:
    """Trainable parameters with no gradient after a backward pass (a layer not wired in)."""
    return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


def report_unused(model: nn.Module) -> None:
    unused = unused_parameters(model)
    if unused:
        log.warning(
            "%d parameter(s) received no gradient in the first step (defined but not used in "
            "forward?): %s",
            len(unused),
            ", ".join(unused[:10]) + (" ..." if len(unused) > 10 else ""),
        )
