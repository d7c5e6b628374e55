"""Before training: run the built model once on one input of the data's shape, so a model that
cannot take these images (too small for its downsampling, wrong output) fails with a clear
message at build time instead of a traceback mid-epoch."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from athanor.data.plain import call_model, to_device
from athanor.errors import ConfigError


def _shape(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return "x".join(map(str, x.shape[1:]))
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k}: {_shape(v)}" for k, v in x.items()) + "}"
    return "(" + ", ".join(_shape(v) for v in x) + ")"


@torch.no_grad()
def probe(
    model: nn.Module,
    *,
    name: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    example: Any = None,
    forward: Callable[[nn.Module, Any], Any] = call_model,
):
    """Raise ConfigError unless ``model`` maps one input (``example``, with a batch dimension;
    default zeros [1, C, H, W]) to outputs [1, num_classes]. ``forward(model, input)`` runs it
    (a training run's build counts the FLOPs of this pass for its model summary)."""
    was_training = model.training
    model.eval()  # batch statistics of one image would be meaningless (and fail on 1x1 maps)
    device = next(model.parameters()).device
    shape = f"{in_channels}x{image_size}x{image_size}"
    if example is None:
        example = torch.zeros(1, in_channels, image_size, image_size)
    elif not isinstance(example, torch.Tensor) or example.shape[1:] != (
        in_channels,
        image_size,
        image_size,
    ):
        shape = _shape(example)
    _check_signature(model, example, name=name, shape=shape)
    try:
        logits = forward(model, to_device(example, device))
    except (RuntimeError, ValueError, AssertionError) as err:
        raise ConfigError(
            f"model {name} cannot run on {shape} images: {str(err).splitlines()[0]}. Use larger "
            "images (data.image_size) or a model made for small inputs (cifar_resnet18, "
            "simple_cnn, mlp)."
        ) from err
    finally:
        model.train(was_training)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (1, num_classes):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ConfigError(
            f"model {name} returns {got} for one {shape} image, not logits of shape "
            f"(1, {num_classes})."
        )


def _check_signature(model: nn.Module, example: Any, *, name: str, shape: str) -> None:
    """Refuse a model whose forward cannot take the data's input as athanor passes it (a dict
    as keyword arguments, a tuple as positional ones, a tensor as one): said in the terms of
    the data and the forward, not as a TypeError from inside torch's module call."""
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):  # a builtin or C++ forward: nothing to compare with
        return
    if isinstance(example, dict):
        args, kwargs = (), example
    elif isinstance(example, tuple):
        args, kwargs = example, {}
    else:
        args, kwargs = (example,), {}
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        raise ConfigError(
            f"model {name}'s forward{signature} cannot take the data's input {shape} ({err}). "
            "athanor calls forward(**inputs) for a dict input, forward(*inputs) for a tuple and "
            "forward(inputs) for a tensor: make the data set's input and the model's forward "
            "agree (e.g. name forward's parameters after the dict's keys)."
        ) from None
