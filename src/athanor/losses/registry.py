"""The LOSSES registry (a leaf module: builders import it)."""

from __future__ import annotations

from athanor.config.groups import LossOptions
from athanor.registry import Contract, Registry

# runtime: the number of outputs, and the model (a penalty on its weights names `model`)
LOSSES: Registry = Registry(
    "loss",
    runtime=("num_classes", "model"),
    options=LossOptions,
    returns=Contract(
        "a callable (an nn.Module) mapping (outputs, targets) to a scalar loss", callable
    ),
)
