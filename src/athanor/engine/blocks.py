"""A model's repeated blocks: the units that FSDP shards one at a time, that activation
checkpointing recomputes and that regional compilation compiles once per kind.

Zoo models are recognised by their block classes (``ZOO_BLOCKS``, data: one line per model
family); the user's own models name theirs with ``model.blocks=[MyBlock]`` (a class name, or its
``module.QualName``). The outermost match wins: a block inside a block is part of its parent.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from athanor.errors import ConfigError

# module.ClassName of the repeated blocks of torchvision's, timm's and athanor's own models
ZOO_BLOCKS = frozenset(
    {
        # torchvision
        "torchvision.models.resnet.BasicBlock",
        "torchvision.models.resnet.Bottleneck",
        "torchvision.models.vision_transformer.EncoderBlock",
        "torchvision.models.convnext.CNBlock",
        "torchvision.models.efficientnet.MBConv",
        "torchvision.models.efficientnet.FusedMBConv",
        "torchvision.models.mobilenetv3.InvertedResidual",
        "torchvision.models.swin_transformer.SwinTransformerBlock",
        "torchvision.models.swin_transformer.SwinTransformerBlockV2",
        # timm
        "timm.models.resnet.BasicBlock",
        "timm.models.resnet.Bottleneck",
        "timm.models.vision_transformer.Block",
        "timm.models.vision_transformer.ResPostBlock",
        "timm.models.convnext.ConvNeXtBlock",
        "timm.models.swin_transformer.SwinTransformerBlock",
        "timm.models._efficientnet_blocks.InvertedResidual",
        "timm.models._efficientnet_blocks.DepthwiseSeparableConv",
        "timm.models._efficientnet_blocks.EdgeResidual",
        "timm.models.eva.EvaBlock",
        "timm.models.beit.Block",
        # athanor (models/)
        "athanor.models.airbench.ConvGroup",
    }
)


def class_names(module: nn.Module) -> tuple[str, str]:
    """(``ClassName``, ``module.QualName``): the two ways a block class may be named."""
    cls = type(module)
    return cls.__name__, f"{cls.__module__}.{cls.__qualname__}"


def find_blocks(model: nn.Module, named: Iterable[str] | None = None) -> list[nn.Module]:
    """The outermost submodules whose class is a zoo block, or one of ``named`` when given
    (``model.blocks``: then the table is not used). In forward order of registration."""
    wanted = set(named) if named else None
    if wanted is not None:
        _check_named(model, wanted)
    found: list[nn.Module] = []
    inside: set[str] = set()
    for name, module in model.named_modules():
        if module is model or any(name.startswith(prefix) for prefix in inside):
            continue
        short, qualified = class_names(module)
        if wanted is not None:
            hit = short in wanted or qualified in wanted
        else:
            hit = qualified in ZOO_BLOCKS
        if hit:
            found.append(module)
            inside.add(name + ".")
    return found


def describe(blocks: list[nn.Module]) -> str:
    """'12 x Block' style counts, e.g. for the log: '2 x BasicBlock, 2 x Bottleneck'."""
    counts: dict[str, int] = {}
    for block in blocks:
        counts[type(block).__name__] = counts.get(type(block).__name__, 0) + 1
    return ", ".join(f"{n} x {name}" for name, n in counts.items()) or "none"


def _check_named(model: nn.Module, named: set[str]) -> None:
    """Refuse a ``model.blocks`` name that no module of ``model`` has: a typo would otherwise
    leave the model unsharded, unchecked or uncompiled, said only in a warning."""
    held = {name for module in model.modules() for name in class_names(module)}
    missing = sorted(named - held)
    if missing:
        classes = sorted({type(m).__name__ for m in model.modules() if m is not model})
        raise ConfigError(
            f"model.blocks names {', '.join(missing)}, but no module of the model "
            f"({type(model).__name__}) has that class. Its module classes: "
            f"{', '.join(classes) or '(none)'}. Name the class of its repeated blocks (ClassName "
            "or module.QualName), or leave model.blocks out for the zoo's block table."
        )
