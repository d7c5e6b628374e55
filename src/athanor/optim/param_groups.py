"""Parameter groups: no weight decay on biases/normalization weights, per-module LR factors."""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from athanor.config.groups import ParamGroupOptions
from athanor.errors import ConfigError

log = logging.getLogger(__name__)

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
VALID_NO_DECAY = ("bias", "norm", "embedding")


def group_options(values: dict[str, Any]) -> ParamGroupOptions:
    """The typed `optim.no_decay` / `optim.lr_mult` (declared in config/groups.py)."""
    return ParamGroupOptions.parse(values, "optim")


def _kind_of(module: nn.Module, param_name: str) -> set[str]:
    kinds = set()
    if param_name == "bias":
        kinds.add("bias")
    if isinstance(module, _NORM_TYPES) or type(module).__name__.lower().endswith("norm"):
        kinds.add("norm")
    if isinstance(module, nn.Embedding):
        kinds.add("embedding")
    return kinds


def param_groups(
    model: nn.Module,
    *,
    no_decay: list[str] | None = None,
    lr_mult: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Split trainable parameters into groups keyed by (decay?, lr factor).

    ``no_decay``: kinds among bias / norm / embedding that get ``weight_decay=0``.
    ``lr_mult``: ``{module-name prefix: factor}``; the longest matching prefix wins.
    Each group carries ``name`` and ``lr_mult`` so the optimizer's base LR can be scaled after
    construction and the log/TensorBoard can name the groups.
    """
    no_decay = list(no_decay or [])
    lr_mult = dict(lr_mult or {})
    bad = [k for k in no_decay if k not in VALID_NO_DECAY]
    if bad:
        raise ConfigError(
            f"optim.no_decay has {bad[0]!r}; valid entries: {', '.join(VALID_NO_DECAY)}."
        )
    names = {n for n, _ in model.named_modules()}
    for prefix in lr_mult:
        if not any(n == prefix or n.startswith(prefix + ".") for n in names):
            top = sorted({n.split(".")[0] for n in names if n})
            raise ConfigError(
                f"optim.lr_mult names module prefix {prefix!r}, which matches no module of the "
                f"model. Top-level modules: {', '.join(top)}."
            )
    groups: dict[tuple[bool, float], dict[str, Any]] = {}
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            full = f"{module_name}.{param_name}" if module_name else param_name
            decay = not (_kind_of(module, param_name) & set(no_decay))
            matches = [p for p in lr_mult if full == p or full.startswith(p + ".")]
            factor = float(lr_mult[max(matches, key=len)]) if matches else 1.0
            group = groups.setdefault(
                (decay, factor),
                {
                    "params": [],
                    "lr_mult": factor,
                    "decay": decay,
                    "name": ("decay" if decay else "no_decay")
                    + (f"_x{factor:g}" if factor != 1 else ""),
                },
            )
            group["params"].append(param)
    if not groups:
        raise ConfigError("The model has no trainable parameters (is everything frozen?).")
    return list(groups.values())


def finalize_groups(optimizer, groups: list[dict[str, Any]]) -> None:
    """Apply decay=False and lr factors on the constructed optimizer's groups."""
    for group in optimizer.param_groups:
        if not group.get("decay", True) and "weight_decay" in group:
            group["weight_decay"] = 0.0
        group["lr"] = group["lr"] * group.get("lr_mult", 1.0)


def describe_groups(optimizer) -> str:
    return "; ".join(
        f"{g.get('name', i)}: {sum(p.numel() for p in g['params']):,} params, lr {g['lr']:.3g}, "
        f"wd {g.get('weight_decay', 0):.3g}"
        for i, g in enumerate(optimizer.param_groups)
    )
