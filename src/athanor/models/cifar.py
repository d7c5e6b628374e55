"""ResNets for 32x32 inputs (CIFAR, SVHN): torchvision's ResNet with a 3x3 stride-1 stem and no
max-pool, so the last stage still sees 4x4 feature maps instead of 1x1 (He et al. 2016, the
variant used by the ~95% CIFAR-10 ResNet-18 recipes)."""

from __future__ import annotations

from torch import nn

from athanor.models.registry import MODELS


def cifar_stem(model: nn.Module, in_channels: int) -> nn.Module:
    """Swap the 7x7 stride-2 conv + max-pool (for 224x224) for one 3x3 stride-1 conv."""
    model.conv1 = nn.Conv2d(in_channels, model.conv1.out_channels, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


def _register(depth: int) -> None:
    name = f"cifar_resnet{depth}"

    @MODELS.register(name, description=f"ResNet-{depth} with a 3x3 stride-1 stem, no max-pool")
    def build(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        import torchvision

        del image_size  # global average pooling: any size works, 32x32 is what it is made for
        model = torchvision.models.get_model(
            f"resnet{depth}", weights=None, num_classes=num_classes
        )
        return cifar_stem(model, in_channels)


for _depth in (18, 34, 50):
    _register(_depth)
