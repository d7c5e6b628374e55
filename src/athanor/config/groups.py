"""The component groups and their group-wide keys: one table, one typed option class a group.

A component node is ``{name: <registered builder>, **builder arguments, **group-wide keys}``. The
group-wide keys (``data.batch_size``, ``model.freeze``, ``scheduler.warmup_steps`` ...) apply
whatever builder is chosen, so they are declared here, once, with their types, ranges and
defaults. The CLI generates each group's defaults from these classes (``group_defaults()``) and
merges them under the chosen YAML file, so a group file holds only its ``name:`` and what differs.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from athanor.config.schema import parse
from athanor.errors import ConfigError
from athanor.typecheck import Fraction, NonNegative, Positive, Range


class GroupOptions:
    """Base of the option classes: the keys and defaults the CLI merges under each group."""

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return dataclasses.asdict(cls())  # type: ignore[call-overload]

    @classmethod
    def parse(cls, values: dict[str, Any] | None, group: str) -> Any:
        return parse(cls, values, group)


@dataclass(frozen=True)
class DataOptions(GroupOptions):
    """`data.*`: batching, loading path, splits and normalization."""

    batch_size: Annotated[int, Positive] = 64  # global batch: split evenly across DDP ranks
    num_workers: Annotated[int, NonNegative] | None = None  # DataLoader; None: from the CPU count
    loader: Literal["auto", "memory", "torch"] = "auto"  # auto: memory when the split is a tensor
    root: str = "data"  # where file-based data sets look
    download: bool = False  # fetch the archive into data.root first (data sets that can)
    # share of the training split held out for validation (data sets without a val split)
    val_split: Annotated[float, Range(0, 1, low_open=True, high_open=True)] | None = None
    subset: Annotated[int, Positive] | None = None  # first N samples of each split
    sampler: Literal["random", "weighted"] = "random"  # weighted: inverse class frequency
    drop_last: bool = True  # training batches only; keeps every step the same size
    memory_budget_mb: Annotated[float, Positive] = 4096.0  # memory path falls back above this
    pin_memory: bool = True  # CUDA only
    persistent_workers: bool = True  # keep DataLoader workers alive between epochs
    prefetch_factor: Annotated[int, Positive] = 2  # batches read ahead per worker
    mean: Annotated[list[float], Range()] | None = None  # normalization; None: the data set's
    std: Annotated[list[float], Positive] | None = None  # one per channel, as data.mean
    image_size: Annotated[int, Positive] | None = None  # None: the data set's own
    class_names: list[str] | None = None  # None: from the data set
    num_classes: Annotated[int, Positive] | None = None  # None: from the data (classes / targets)
    # dataset: the data set's own mean/std (built-ins: published); auto: measured on a seeded
    # sample of the training split; none: inputs as they come (uint8 still scaled to [0, 1])
    normalize: Literal["dataset", "auto", "none"] = "dataset"
    annotations: str | None = None  # CSV data sets: file of `path,label` rows
    # before the first step, on a seeded sample (or all, or none): data sets read per file
    # decode their files; your own Datasets' items must have the shapes of item 0
    verify: Literal["none", "sample", "all"] = "sample"
    on_bad_file: Literal["error", "skip"] = "error"  # skip: leave bad files out, listed in the log

    def __post_init__(self) -> None:
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ConfigError(
                f"data.mean has {len(self.mean)} entries but data.std has {len(self.std)}; give "
                "one per channel in both."
            )
        object.__setattr__(self, "root", os.path.expanduser(self.root))  # data.root=~/datasets

    def workers(self) -> int:
        """DataLoader workers: the configured number, or all but one core (at most 8)."""
        if self.num_workers is not None:
            return self.num_workers
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(0, min(8, (cores or 1) - 1))


@dataclass(frozen=True)
class ModelOptions(GroupOptions):
    """`model.*`: applied in order init, weights (overriding init), freeze."""

    weights: str | None = None  # a local state_dict or checkpoint (.pt) to start from
    strict: bool = True  # every key and shape must match (false: load what matches)
    # module-name prefixes kept fixed ("0" in Sequentials)
    freeze: list[str | int] | None = ()  # type: ignore[assignment]
    init: Literal["default", "kaiming", "xavier"] = "default"  # before the weights are loaded
    # the repeated blocks (class names) that fsdp shards, activation checkpointing recomputes and
    # regional compile compiles; None: the zoo's known block classes (engine/blocks.py)
    blocks: list[str] | None = None


@dataclass(frozen=True)
class ParamGroupOptions(GroupOptions):
    """`optim.*` keys every optimizer accepts: parameter groups."""

    # kinds of parameter that get weight_decay 0 (biases and normalization weights by default)
    no_decay: list[Literal["bias", "norm", "embedding"]] | None = ("bias", "norm")  # type: ignore[assignment]
    lr_mult: Annotated[dict[str, float], Positive] | None = None  # {module-name prefix: factor}

    @classmethod
    def parse(cls, values: dict[str, Any] | None, group: str) -> ParamGroupOptions:
        values = dict(values or {})
        if isinstance(values.get("lr_mult"), dict):  # `optim.lr_mult={3: 10}`: an int key
            values["lr_mult"] = {str(k): v for k, v in values["lr_mult"].items()}
        return parse(cls, values, group)


@dataclass(frozen=True)
class WarmupOptions(GroupOptions):
    """`scheduler.warmup_*`: a linear warmup before any schedule."""

    warmup_epochs: Annotated[float, NonNegative] | None = None  # length in epochs, or ...
    warmup_steps: Annotated[int, NonNegative] | None = None  # ... in optimizer steps
    warmup_start_factor: Annotated[float, Range(0, 1, low_open=True)] = 0.01  # x the base LR

    def __post_init__(self) -> None:
        if self.warmup_epochs is not None and self.warmup_steps is not None:
            raise ConfigError(
                "Set scheduler.warmup_epochs or scheduler.warmup_steps, not both (got "
                f"warmup_epochs={self.warmup_epochs}, warmup_steps={self.warmup_steps})."
            )

    def steps(self, steps_per_epoch: int) -> int:
        """The warmup in optimizer steps."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return round((self.warmup_epochs or 0) * steps_per_epoch)


@dataclass(frozen=True)
class LossOptions(GroupOptions):
    """`loss.*` keys every loss accepts."""

    flooding: Annotated[float, NonNegative] | None = None  # flooding level b: |loss - b| + b


@dataclass(frozen=True)
class MixOptions(GroupOptions):
    """`augment.*` batch-level mixing, usable with any augment: `augment.mixup_alpha=0.2`."""

    mixup_alpha: Annotated[float, NonNegative] = 0.0  # Beta(alpha, alpha) weight; 0 = off
    cutmix_alpha: Annotated[float, NonNegative] = 0.0  # Beta(alpha, alpha) box area; 0 = off
    mix_prob: Annotated[float, Fraction] = 1.0  # probability that a batch is mixed at all
    switch_prob: Annotated[float, Fraction] = 0.5  # both alphas > 0: P(cutmix instead of mixup)

    @property
    def enabled(self) -> bool:
        return self.mix_prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)


@dataclass(frozen=True)
class TaskOptions(GroupOptions):
    """`task.*` keys every task accepts."""

    metrics: list[str] | None = ()  # type: ignore[assignment]  # registered METRICS logged besides the task's own


# The component groups, in build order, each with its group-wide option class.
COMPONENT_GROUPS: dict[str, type[GroupOptions]] = {
    "model": ModelOptions,
    "data": DataOptions,
    "optim": ParamGroupOptions,
    "scheduler": WarmupOptions,
    "augment": MixOptions,
    "loss": LossOptions,
    "task": TaskOptions,
}


def group_defaults() -> dict[str, dict[str, Any]]:
    """{group: its group-wide keys with their defaults}: what the CLI merges under each group."""
    return {group: options.defaults() for group, options in COMPONENT_GROUPS.items()}


def group_options(group: str, values: dict[str, Any] | None) -> Any:
    """The typed group-wide options of ``group`` from the node's group-wide keys."""
    return COMPONENT_GROUPS[group].parse(values, group)
