"""Speed switches that change how the model runs, not what it computes: channels_last memory
format and ``torch.compile`` with a fallback to eager execution when compilation fails."""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

log = logging.getLogger("athanor")


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """NHWC strides for 4-D image batches (what cuDNN/oneDNN convolutions prefer)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


class CompiledOrEager(nn.Module):
    """Calls the compiled module; if compiling fails (compilation happens lazily, at the first
    call), says why once and runs the eager module from then on."""

    def __init__(self, eager: nn.Module):
        super().__init__()
        self.eager = eager
        self.compiled = torch.compile(eager)
        self.failed = False

    def forward(self, *args, **kwargs):
        if not self.failed:
            try:
                return self.compiled(*args, **kwargs)
            except torch.OutOfMemoryError:  # the batch, not the compiler: eager would fail too
                raise
            except Exception as err:  # noqa: BLE001 - any compiler failure means: run eager
                self.failed = True
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                log.warning(
                    "trainer.compile=true: torch.compile failed (%s: %s); falling back to eager "
                    "execution. Training continues, only slower; set trainer.compile=false to "
                    "skip the attempt.",
                    type(err).__name__,
                    first[:300],
                )
        return self.eager(*args, **kwargs)

    def no_sync(self):
        """DDP inside: gradient accumulation still skips the all-reduce."""
        inner = getattr(self.eager, "no_sync", None)
        return inner() if inner is not None else contextlib.nullcontext()
