"""torchvision classification models by name, adapted to the data's channels, classes and size.

`model=torchvision model.arch=<any classification arch>` reaches every model in
``torchvision.models.list_models(module=torchvision.models)``; the common ones also have
first-class names (`model=resnet50`) with their own YAML.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from athanor.errors import ConfigError
from athanor.models.registry import MODELS

# Archs with a first-class registered name and conf/model/<name>.yaml.
FIRST_CLASS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "wide_resnet50_2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "convnext_tiny",
    "vit_b_16",
)

# Constructor defaults that make an arch train like any other: googlenet/inception return
# auxiliary logits in training mode unless told not to (the loss expects one tensor).
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def classification_archs() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _size_kwargs(arch: str, image_size: int) -> dict[str, Any]:
    """Vision transformers fix their input size at construction (position embeddings)."""
    if arch.startswith("vit_"):
        patch = int(arch.rsplit("_", 1)[1])
        if image_size % patch:
            raise ConfigError(
                f"{arch} cuts images into {patch}x{patch} patches, but the data's images are "
                f"{image_size}x{image_size} ({image_size} is not a multiple of {patch}). Resize "
                f"the data (data.image_size={-(-image_size // patch) * patch} or 224) or pick a "
                "convolutional model."
            )
        return {"image_size": image_size}
    if arch == "maxvit_t":
        return {"input_size": (image_size, image_size)}
    return {}


def build_torchvision(
    arch: str, *, num_classes: int, in_channels: int, image_size: int, **kwargs: Any
) -> nn.Module:
    """torchvision's own constructor with ``num_classes`` (a fresh head), no pretrained weights
    (nothing is downloaded; use ``model.weights=<local file>``), first conv adapted to channels."""
    import torchvision

    archs = classification_archs()
    if arch not in archs:
        from athanor.registry import closest

        raise ConfigError(
            f"model.arch={arch!r} is not a torchvision classification model.{closest(arch, archs)} "
            f"Valid: {', '.join(archs)}."
        )
    options = {**ARCH_DEFAULTS.get(arch, {}), **_size_kwargs(arch, image_size), **kwargs}
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **options)
    if in_channels != 3:
        adapt_input_channels(model, in_channels)
    return model


def adapt_input_channels(model: nn.Module, in_channels: int) -> None:
    """Replace the first Conv2d with one taking ``in_channels`` (same kernel, stride, padding)."""
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                new = nn.Conv2d(
                    in_channels,
                    child.out_channels,
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    child.dilation,
                    bias=child.bias is not None,
                )
                setattr(parent, child_name, new)
                return


@MODELS.register("torchvision")
def torchvision_model(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    arch: str = "resnet18",
    options: dict | None = None,
) -> nn.Module:
    """Any torchvision classification model by name: `model.arch=<name>`."""
    return build_torchvision(
        arch,
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        **(options or {}),
    )


def _register_arch(arch: str) -> None:
    @MODELS.register(arch, description=f"torchvision {arch}, head sized to the data's classes")
    def build(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        return build_torchvision(
            arch, num_classes=num_classes, in_channels=in_channels, image_size=image_size
        )


for _arch in FIRST_CLASS:
    _register_arch(_arch)
