"""Applying the group-wide model options (declared in config/groups.py): `model.init`,
`model.weights` (+ `model.strict`), `model.freeze`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from athanor.config.groups import ModelOptions
from athanor.errors import ConfigError

log = logging.getLogger(__name__)


def model_options(values: dict[str, Any]) -> ModelOptions:
    return ModelOptions.parse(values, "model")


def apply_model_options(model: nn.Module, values: dict[str, Any]) -> None:
    """Applied in order: init, then weights (which override init), then freeze."""
    options = model_options(values)
    if options.init != "default":
        initialize(model, options.init)
    if options.weights:
        load_weights(model, Path(options.weights), strict=options.strict)
    if options.freeze:
        freeze(model, [str(prefix) for prefix in options.freeze])


def initialize(model: nn.Module, scheme: str) -> None:
    """Re-initialize conv/linear weights (kaiming: fan_out for ReLU nets; xavier: uniform)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    log.info("model: %s initialization", scheme)


def _state_dict_from(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and isinstance(obj.get("state"), dict):
        obj = obj["state"]  # an athanor checkpoint of format 2: the train state's parts
    if isinstance(obj, dict) and set(obj.get("model") or {}) == {"shards"}:
        raise ConfigError(
            f"model.weights={path} is a sharded checkpoint (distributed.strategy=fsdp): its "
            "weights are in a folder of shards. Use the consolidated copy the run wrote beside "
            f"it, model.weights={path.parent / 'model.pt'} (or best.pt)."
        )
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # an athanor (or similar) training checkpoint
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"model.weights={path} holds no state_dict of tensors.")
    prefix = "module."  # saved from DataParallel / DistributedDataParallel
    return {k.removeprefix(prefix).removeprefix("_orig_mod."): v for k, v in obj.items()}


def load_weights(model: nn.Module, path: Path, *, strict: bool = True) -> None:
    if not path.is_file():
        raise ConfigError(
            f"model.weights={path} does not exist (give a local state_dict or checkpoint)."
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"model.weights={path} could not be loaded: {err}") from err
    state = _state_dict_from(obj, path)
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if strict and mismatched:
        raise ConfigError(
            f"model.weights={path}: shapes differ for {', '.join(mismatched[:5])}; with a different "
            "head use model.strict=false to skip them."
        )
    state = {k: v for k, v in state.items() if k not in mismatched}
    result = model.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if strict and (missing or unexpected):
        raise ConfigError(
            f"model.weights={path} does not match the model: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}. Use model.strict=false to load what matches."
        )
    log.info(
        "model: loaded %d tensors from %s (missing %d, unexpected %d, shape-skipped %d)",
        len(state) - len(unexpected),
        path,
        len(missing),
        len(unexpected),
        len(mismatched),
    )
    for name in missing[:10]:
        log.info("  missing: %s", name)
    for name in unexpected[:10]:
        log.info("  unexpected: %s", name)


def freeze(model: nn.Module, prefixes: list[str]) -> None:
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        hit = [n for n in names if n == prefix or n.startswith(prefix + ".")]
        if not hit:
            top = sorted({n.split(".")[0] for n in names})
            raise ConfigError(
                f"model.freeze prefix {prefix!r} matches no parameter; top-level: {top}."
            )
    frozen = 0
    for name, p in model.named_parameters():
        if any(name == q or name.startswith(q + ".") for q in prefixes):
            p.requires_grad_(False)
            frozen += p.numel()
    log.info("model: froze %s (%s parameters)", ", ".join(prefixes), f"{frozen:,}")
