"""timm's optimizers by name: `optim=timm optim.opt=<name>` (lamb, lion, adopt, muon, ...; the
`athanor[timm]` extra). timm builds the optimizer from athanor's parameter groups, so
`optim.no_decay` and `optim.lr_mult` apply exactly as for the torch optimizers."""

from __future__ import annotations

from typing import Annotated, Any

from athanor.errors import ConfigError
from athanor.optim.optimizers import LearningRate, Optimizer
from athanor.optim.registry import OPTIMIZERS
from athanor.registry import closest
from athanor.typecheck import Fraction, NonNegative


def timm_optimizer_names() -> list[str]:
    import timm.optim

    return list(timm.optim.list_optimizers())


@OPTIMIZERS.register("timm", description="any timm optimizer: optim.opt=lamb|lion|adopt|muon|…")
def timm_optimizer(
    params,
    *,
    opt: str = "lamb",
    lr: LearningRate = 1.0e-3,
    weight_decay: Annotated[float, NonNegative] = 0.05,
    momentum: Annotated[float, Fraction] = 0.9,  # for the momentum-based ones (sgd, lars, muon…)
    kwargs: dict[str, Any] | None = None,
) -> Optimizer:
    """timm.optim.create_optimizer_v2 on the parameter groups; ``kwargs`` go to the optimizer."""
    try:
        import timm.optim
    except ImportError:
        raise ConfigError(
            "optim=timm needs timm, which is not installed: pip install 'athanor[timm]'."
        ) from None
    names = timm_optimizer_names()
    if opt.lower() not in names:
        raise ConfigError(
            f"optim.opt={opt!r} is not a timm optimizer.{closest(opt, names)} "
            f"Valid: {', '.join(names)}."
        )
    try:
        return timm.optim.create_optimizer_v2(
            params,
            opt=opt,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            # the groups already say which parameters decay (optim.no_decay)
            filter_bias_and_bn=False,
            **(kwargs or {}),
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"optim=timm optim.opt={opt}: timm refused the options: {err}. Check optim.kwargs "
            f"({sorted(kwargs or {})})."
        ) from err
