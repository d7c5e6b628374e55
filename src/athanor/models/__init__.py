"""Models: the MODELS registry (models/registry.py) with athanor's builders registered in it."""

from athanor.models import airbench, cifar, simple, timm_models, vision  # noqa: F401  (registers them)
from athanor.models.registry import MODELS, model_label

__all__ = ["MODELS", "model_label"]
