"""torchvision classification models by name, adapted to the data's channels and classes."""

from __future__ import annotations

from torch import nn

from athanor.errors import ConfigError
from athanor.models import MODELS


def classification_archs() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_torchvision(arch: str, *, num_classes: int, in_channels: int, **kwargs) -> nn.Module:
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
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
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
                    child.groups if child.groups == 1 else 1,
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
    """Any torchvision classification model: `model.arch=<name>` (see `athanor list model`)."""
    del image_size
    return build_torchvision(
        arch, num_classes=num_classes, in_channels=in_channels, **(options or {})
    )


def _register_arch(arch: str) -> None:
    @MODELS.register(arch, description=f"torchvision {arch}, head sized to the data's classes")
    def build(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        del image_size
        return build_torchvision(arch, num_classes=num_classes, in_channels=in_channels)


for _arch in ("resnet18",):
    _register_arch(_arch)
