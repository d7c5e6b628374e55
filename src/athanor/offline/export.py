"""`athanor export`: a checkpoint's model written as a plain state_dict, safetensors, ONNX or a
torch.export program, then checked: the exported file, loaded back the way a user would load
it, must give the checkpoint's outputs on a batch of validation data (max abs difference).

The model and the batch are rebuilt from the checkpoint's own config, as `evaluate` does, so the
exported graph sees inputs of the training run's shape, dtype and normalization.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from athanor.data.pipeline import evaluation_loaders
from athanor.engine.build import build_model
from athanor.errors import ConfigError
from athanor.offline.checkpoint_eval import (
    load_for_evaluation,
    model_weights,
    saved_config,
    saved_run_data,
)
from athanor.record.checkpoints import save_atomic, saved_step
from athanor.record.resume import load_model_state

log = logging.getLogger("athanor")

FORMATS = ("state_dict", "safetensors", "onnx", "torch_export")
SUFFIXES = {".safetensors": "safetensors", ".onnx": "onnx", ".pt2": "torch_export"}
# float32 round-off through another runtime; a larger difference means a wrong export
TOLERANCE = 1.0e-4


@dataclass
class Exported:
    path: Path
    format: str
    source: Path
    step: int
    tensors: int
    batch_shape: tuple[int, ...]
    max_abs_diff: float | None  # None: could not be checked here (say why in `note`)
    note: str = ""

    def describe(self) -> str:
        check = (
            f"max abs difference {self.max_abs_diff:.3g} on a validation batch of shape "
            f"{list(self.batch_shape)}"
            if self.max_abs_diff is not None
            else f"not checked: {self.note}"
        )
        return (
            f"{self.path}: {self.format}, {self.tensors} tensors from {self.source} (step "
            f"{self.step}); {check}"
        )


def format_for(path: Path, fmt: str | None) -> str:
    """``fmt`` as given, else from the file's suffix (.safetensors, .onnx, .pt2), else state_dict."""
    fmt = fmt or SUFFIXES.get(path.suffix, "state_dict")
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not valid; use one of {', '.join(FORMATS)}.")
    return fmt


def rebuild(ckpt: str, which: str) -> tuple[nn.Module, Callable[[], nn.Module], Any, Path, dict]:
    """(the checkpoint's model in eval mode, a builder of fresh untrained copies, one validation
    batch's inputs, the checkpoint file, its saved state)."""
    state, path = load_for_evaluation(ckpt)
    config = saved_config(state)
    cpu = torch.device("cpu")
    bundle, options, task = saved_run_data(config, state, cpu)
    loaders = evaluation_loaders(bundle, options, seed=int(config["seed"]), device=cpu, task=task)
    inputs = next(iter(loaders.val.epoch(0))).inputs

    def fresh() -> nn.Module:
        return build_model(config, bundle).eval()

    model = fresh()
    load_model_state(model, model_weights(state, which, path), path)
    return model, fresh, inputs, path, state


def _call(model: Callable, inputs: Any) -> torch.Tensor:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple | list):
        return model(*inputs)
    return model(inputs)


def _args(inputs: Any) -> tuple:
    return tuple(inputs) if isinstance(inputs, tuple | list) else (inputs,)


def _diff(a: torch.Tensor, b: Any) -> float:
    return float((a.float() - torch.as_tensor(b).float()).abs().max())


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    consume_prefix_in_state_dict_if_present(weights, "module.")
    return weights


def _state_dict(model, fresh, inputs, out: Path) -> tuple[int, float, str]:
    weights = _weights(model)
    save_atomic(weights, out)
    copy = fresh()
    copy.load_state_dict(torch.load(out, map_location="cpu", weights_only=True))
    return len(weights), _diff(_call(model, inputs), _call(copy, inputs)), ""


def _safetensors(model, fresh, inputs, out: Path) -> tuple[int, float, str]:
    try:
        from safetensors.torch import load_file, save_model
    except ImportError:
        raise ConfigError(
            "--format safetensors needs safetensors: pip install 'athanor[export]'."
        ) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out))  # drops shared (tied) tensors the format cannot hold twice
    copy = fresh()
    copy.load_state_dict(load_file(str(out)), strict=False)
    return len(load_file(str(out))), _diff(_call(model, inputs), _call(copy, inputs)), ""


def _onnx(model, fresh, inputs, out: Path) -> tuple[int, float | None, str]:
    args = _args(inputs)
    names = [f"input{i}" if len(args) > 1 else "input" for i in range(len(args))]
    axes = {name: {0: "batch"} for name in [*names, "output"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    # the TorchScript-based exporter: the dynamo one needs onnxscript, which is not an extra
    torch.onnx.export(
        model, args, str(out), input_names=names, output_names=["output"], dynamic_axes=axes,
        dynamo=False,
    )  # fmt: skip
    tensors = len(_weights(model))
    try:
        import onnxruntime
    except ImportError:
        return tensors, None, "onnxruntime is not installed (pip install 'athanor[export]')"
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feed = {name: arg.numpy() for name, arg in zip(names, args, strict=True)}
    return tensors, _diff(_call(model, inputs), session.run(None, feed)[0]), ""


def _torch_export(model, fresh, inputs, out: Path) -> tuple[int, float, str]:
    kwargs = inputs if isinstance(inputs, dict) else {}
    args = () if kwargs else _args(inputs)
    batch = {0: torch.export.Dim("batch")}  # any batch size, as for the ONNX graph
    shapes = {k: batch for k in kwargs} if kwargs else tuple(batch for _ in args)
    program = torch.export.export(model, args, kwargs, dynamic_shapes=shapes)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(out))
    loaded = torch.export.load(str(out)).module()
    return len(_weights(model)), _diff(_call(model, inputs), _call(loaded, inputs)), ""


WRITERS = {
    "state_dict": _state_dict,
    "safetensors": _safetensors,
    "onnx": _onnx,
    "torch_export": _torch_export,
}


@torch.no_grad()
def export(ckpt: str, out: Path, fmt: str | None = None, *, ema: bool = False) -> Exported:
    """Write ``ckpt``'s model (or its EMA) to ``out`` in ``fmt`` and check the written file."""
    fmt = format_for(out, fmt)
    model, fresh, inputs, path, state = rebuild(ckpt, "ema" if ema else "model")
    tensors, diff, note = WRITERS[fmt](model, fresh, inputs, out)
    first = _args(inputs)[0] if not isinstance(inputs, dict) else next(iter(inputs.values()))
    result = Exported(out, fmt, path, saved_step(state), tensors, tuple(first.shape), diff, note)
    if diff is not None and diff > TOLERANCE:
        raise ConfigError(
            f"{result.describe()}: the exported model does not give the checkpoint's outputs "
            f"(more than {TOLERANCE:g}); {fmt} does not support this model as exported."
        )
    return result
