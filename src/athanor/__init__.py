"""athanor: a config-driven experiment runner for PyTorch.

The public face, for your own modules, notebooks and tests::

    from athanor import MODELS            # also DATASETS, AUGMENTS, OPTIMIZERS, SCHEDULERS, LOSSES
    summary = athanor.fit(["model=tinynet", "trainer.epochs=1"])
    config = athanor.compose(["model=tinynet"])

Attributes are imported on first use (module ``__getattr__``), so ``import athanor`` stays cheap:
the `train` command does not pay for torch or the registries before it needs them.
"""

from __future__ import annotations

from typing import Any

from athanor.errors import ConfigError

__version__ = "0.1.0"

# public name -> (module, attribute)
_LAZY = {
    "MODELS": ("athanor.models", "MODELS"),
    "DATASETS": ("athanor.data", "DATASETS"),
    "AUGMENTS": ("athanor.augment", "AUGMENTS"),
    "OPTIMIZERS": ("athanor.optim", "OPTIMIZERS"),
    "SCHEDULERS": ("athanor.optim", "SCHEDULERS"),
    "LOSSES": ("athanor.losses", "LOSSES"),
    "METRICS": ("athanor.metrics", "METRICS"),
    "TASKS": ("athanor.tasks", "TASKS"),
    "fit": ("athanor.cli.api", "fit"),
    "compose": ("athanor.cli.api", "compose"),
    "Registry": ("athanor.registry", "Registry"),
    "DataBundle": ("athanor.data", "DataBundle"),
    "TensorSplit": ("athanor.data", "TensorSplit"),
}

__all__ = ["ConfigError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'athanor' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
