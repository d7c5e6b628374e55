"""Before training: run the built model once on one input of the data's shape, so a model that
cannot take these images (too small for its downsampling, wrong head) fails with a clear message
instead of a traceback mid-epoch, and count its FLOPs for the log."""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from athanor.errors import ConfigError

log = logging.getLogger(__name__)


@torch.no_grad()
def probe(model: nn.Module, *, name: str, num_classes: int, in_channels: int, image_size: int):
    """-> forward GFLOPs per image; raises ConfigError when the model rejects the input shape."""
    was_training = model.training
    model.eval()  # batch statistics of one image would be meaningless (and fail on 1x1 maps)
    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, image_size, image_size, device=device)
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            logits = model(x)
    except (RuntimeError, ValueError, AssertionError) as err:
        raise ConfigError(
            f"model {name} cannot run on {in_channels}x{image_size}x{image_size} images: "
            f"{str(err).splitlines()[0]}. Use larger images (data.image_size) or a model made for "
            "small inputs (cifar_resnet18, simple_cnn, mlp)."
        ) from err
    finally:
        model.train(was_training)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (1, num_classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ConfigError(
            f"model {name} returns {shape} for one image, not logits of shape (1, {num_classes})."
        )
    gflops = counter.get_total_flops() / 1e9
    log.info(
        "model %s: %.3g GFLOPs per %dx%dx%d image (forward)",
        name,
        gflops,
        in_channels,
        image_size,
        image_size,
    )
    return gflops
