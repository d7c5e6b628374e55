"""timm's model zoo by name: `model=timm model.arch=<any timm name>` (`athanor[timm]` extra).

The head and stem come from the data (``num_classes``, ``in_chans``), stochastic depth from
``model.drop_path_rate``, and any other constructor keyword of timm from ``model.kwargs``.
``model.pretrained`` loads weights that are already on disk (a file, or timm's own cache) and
never downloads: a run must not depend on the network.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

from torch import nn

from athanor.errors import ConfigError
from athanor.models.registry import MODELS
from athanor.registry import closest
from athanor.typecheck import Fraction

log = logging.getLogger(__name__)

# the weight files timm looks for in a Hugging Face hub repo, in its order of preference
HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def timm_available() -> bool:
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def timm_archs() -> list[str]:
    """Every architecture timm registers (empty when timm is not installed)."""
    if not timm_available():
        return []
    import timm

    return sorted(timm.list_models())


def cached_weights(arch: str) -> Path | None:
    """The file timm would load for ``pretrained=True`` when it is already in its cache (the
    Hugging Face hub cache or torch.hub's checkpoints folder), else None. Nothing is fetched."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    if cfg is None:
        return None
    if cfg.file and Path(cfg.file).is_file():
        return Path(cfg.file)
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = cfg.hf_hub_id.partition("@")
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else HUB_FILES
        for name in names:
            found = try_to_load_from_cache(repo, name, revision=revision or None)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    if cfg.url:
        import torch.hub

        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
        if path.is_file():
            return path
    return None


def pretrained_file(arch: str, pretrained: bool | str) -> Path | None:
    """The local weight file ``model.pretrained`` names, or refuse: never a download."""
    if pretrained is False or pretrained is None:
        return None
    if pretrained is True:
        found = cached_weights(arch)
        if found is None:
            raise ConfigError(
                f"model.pretrained=true: timm's weights for {arch} are not on this machine (looked "
                "in the Hugging Face hub cache and torch.hub's checkpoints), and athanor never "
                "downloads them. Put the file there, or give its path: "
                "model.pretrained=/path/to/weights.safetensors (or .pth); or model.pretrained=false."
            )
        return found
    path = Path(str(pretrained)).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"model.pretrained={pretrained}: no such file. Give a local .safetensors / .pth / .bin "
            "file of timm weights, true (timm's cache), or false."
        )
    return path


def _check_arch(arch: str) -> None:
    if not timm_available():
        raise ConfigError(
            "model=timm needs timm, which is not installed: pip install 'athanor[timm]'."
        )
    import timm

    if not timm.is_model(arch):
        archs = timm_archs()
        raise ConfigError(
            f"model.arch={arch!r} is not a timm model.{closest(arch, archs)} "
            "`athanor list model` lists timm's names."
        )


@MODELS.register("timm", description="any timm model by name: model.arch=<name> (athanor[timm])")
def timm_model(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    arch: str = "resnet18",
    pretrained: bool | str = False,
    drop_path_rate: Annotated[float, Fraction] = 0.0,
    kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """timm.create_model(arch) with the data's classes and channels; ``kwargs`` go to timm."""
    _check_arch(arch)
    import timm
    from timm.models import get_pretrained_cfg

    file = pretrained_file(arch, pretrained)
    options: dict[str, Any] = {"drop_path_rate": drop_path_rate, **(kwargs or {})}
    cfg = get_pretrained_cfg(arch)
    if cfg is not None and cfg.fixed_input_size and "img_size" not in options:
        options["img_size"] = image_size  # position embeddings are sized at construction
    if file is not None:
        # timm loads this file instead of fetching, adapting the stem to in_chans and dropping
        # the classifier when num_classes differs
        options["pretrained_cfg_overlay"] = {"file": str(file)}
    try:
        model = timm.create_model(
            arch,
            pretrained=file is not None,
            num_classes=num_classes,
            in_chans=in_channels,
            **options,
        )
    except TypeError as err:
        raise ConfigError(
            f"model=timm model.arch={arch}: timm refused a keyword: {err}. Check model.kwargs "
            f"({sorted(kwargs or {})}) against {arch}'s constructor."
        ) from err
    except (RuntimeError, ValueError, AssertionError) as err:
        raise ConfigError(
            f"model=timm model.arch={arch} cannot be built for {in_channels}x{image_size}x"
            f"{image_size} inputs and {num_classes} classes: {str(err).splitlines()[0]}"
        ) from err
    if file is not None:
        log.info("model %s: pretrained weights from %s", arch, file)
    return model
