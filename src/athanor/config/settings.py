"""Typed, frozen settings for everything that is not a registered component.

The CLI hands plain dicts; ``parse(cls, dict, prefix)`` (config/schema.py) refuses unknown keys,
wrong types and out-of-range numbers, and each class's ``__post_init__`` refuses impossible
combinations, so mistakes surface before any work. The component groups' own keys are in
config/groups.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from athanor.config.schema import parse
from athanor.errors import ConfigError
from athanor.typecheck import NonNegative, Positive


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _positive(key: str, value: float | None, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    _require(value is not None and value > 0, f"{key}={value!r} must be a positive number.")


def parse_duration(value: float | str | None) -> float | None:
    """Seconds from a number of seconds or 'DD:HH:MM:SS' / 'HH:MM:SS' / 'MM:SS'."""
    if value is None or isinstance(value, int | float):
        return None if value is None else float(value)
    try:
        parts = [float(p) for p in value.split(":")]
    except ValueError:
        parts = []
    if not 1 <= len(parts) <= 4:
        raise ConfigError(
            f"trainer.max_time={value!r} is not a duration; use seconds (3600) or 'HH:MM:SS'."
        )
    seconds = 0.0
    for part, unit in zip(reversed(parts), (1, 60, 3600, 86400), strict=False):
        seconds += part * unit
    return seconds


@dataclass(frozen=True)
class EmaSettings:
    decay: float | None = None  # e.g. 0.999; None disables EMA
    every: int = 1  # update every N optimizer steps
    warmup: bool = True  # decay ramps up as min(decay, (1+t)/(10+t)) early in training

    def __post_init__(self) -> None:
        if self.decay is not None:
            _require(0 < self.decay < 1, f"trainer.ema.decay={self.decay} must be in (0, 1).")
        _positive("trainer.ema.every", self.every)


@dataclass(frozen=True)
class EarlyStopping:
    monitor: str | None = None  # e.g. val/loss; None disables early stopping
    patience: int = 5  # in validations without improvement
    mode: Literal["min", "max"] = "max"
    min_delta: Annotated[float, NonNegative] = 0.0  # smallest change that counts as better

    def __post_init__(self) -> None:
        _require(
            self.patience >= 0, f"trainer.early_stopping.patience={self.patience} must be >= 0."
        )


@dataclass(frozen=True)
class TrainerSettings:
    epochs: int = 20
    max_steps: int | None = None  # cap on optimizer steps
    val_every: int = 1  # in epochs
    log_every: int = 50  # in optimizer steps
    precision: int | str = 32  # 32 | bf16 | fp16
    accumulate: int = 1  # micro-batches per optimizer step
    grad_clip: float | None = None
    grad_clip_mode: Literal["norm", "value"] = "norm"
    channels_last: bool = False
    compile: bool | Literal["regional"] = False  # regional: each repeated block (engine/regions.py)
    activation_checkpointing: bool = False  # recompute each block's activations in backward
    deterministic: bool = False
    ema: EmaSettings = field(default_factory=EmaSettings)
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    max_time: float | str | None = None  # wall-clock budget
    skip_nonfinite: int = 0  # NaN/Inf steps to skip before failing
    detect_anomaly: bool = False
    sync_bn: bool = False
    overfit_batches: int = 0  # >0: train on this many fixed batches, no augmentation
    limit_train_batches: int | None = None  # per epoch
    limit_val_batches: int | None = None
    tta_flip: bool = False  # average predictions over the image and its mirror at evaluation

    def __post_init__(self) -> None:
        _require(
            self.epochs >= 1,
            f"trainer.epochs={self.epochs} must be at least 1 (the number of passes over the "
            "training data).",
        )
        for key in (
            "max_steps",
            "val_every",
            "log_every",
            "accumulate",
            "limit_train_batches",
            "limit_val_batches",
        ):
            _positive(f"trainer.{key}", getattr(self, key))
        _positive("trainer.grad_clip", self.grad_clip)
        _require(
            str(self.precision) in ("32", "bf16", "fp16"),
            f"trainer.precision={self.precision!r} is not supported; valid: 32, bf16, fp16.",
        )
        object.__setattr__(self, "precision", str(self.precision))
        object.__setattr__(self, "max_time", parse_duration(self.max_time))
        _positive("trainer.max_time", self.max_time)
        _require(self.skip_nonfinite >= 0, "trainer.skip_nonfinite must be >= 0.")
        _require(self.overfit_batches >= 0, "trainer.overfit_batches must be >= 0.")


@dataclass(frozen=True)
class CheckpointSettings:
    enabled: bool = True  # false: write no checkpoint files (debug=fast)
    every_epochs: int | None = 1
    every_steps: int | None = None  # mid-epoch checkpoints
    keep_steps: int = 2  # newest periodic step_*.pt files kept (last.pt is a link to the newest)
    best_weights_only: bool = True  # best.pt: model (+EMA) weights only; resume uses last.pt
    monitor: str = "val/acc"  # metric deciding best.pt; val_ema/acc follows the EMA weights
    mode: Literal["min", "max"] = "max"
    save_last: bool = True
    on_error: Literal["stop", "warn"] = "stop"

    def __post_init__(self) -> None:
        _positive("checkpoint.every_epochs", self.every_epochs)
        _positive("checkpoint.every_steps", self.every_steps)
        _require(
            self.keep_steps >= 1,
            f"checkpoint.keep_steps={self.keep_steps} must be >= 1 (the newest step file is "
            "last.pt's data).",
        )


@dataclass(frozen=True)
class MlflowSettings:
    tracking_uri: str | None = None  # None: the local store ./mlruns beside outputs/ (no server)
    experiment: str = "athanor"  # MLflow experiment name (created when missing)
    log_checkpoint: Literal["best", "last", "none"] = "none"  # a checkpoint as an artifact


@dataclass(frozen=True)
class WandbSettings:
    project: str = "athanor"
    entity: str | None = None  # team or user; None: the logged-in default
    mode: Literal["online", "offline", "disabled"] = "online"  # offline: `wandb sync` later
    dir: str | None = None  # None: <run>/wandb
    log_checkpoint: Literal["best", "last", "none"] = "none"


@dataclass(frozen=True)
class LoggerSettings:
    trackers: list[str] = field(default_factory=lambda: ["tensorboard"])  # observe/trackers/
    tensorboard: bool = True  # false drops "tensorboard" from logger.trackers (a shorthand)
    progress: Literal["auto", "bar", "plain", "none"] = "auto"
    grad_stats_every: int = 0  # per-layer |grad|/|weight| ratios every N steps; 0 = off
    histograms_every: int = 0  # weight and gradient histograms every N steps; 0 = off
    image_grid: bool = True  # a grid of augmented training images at the start
    plots: bool = True  # PNG curves and confusion matrix in the run folder
    flush_secs: Annotated[int, Positive] = 30  # TensorBoard writes at least this often
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)
    wandb: WandbSettings = field(default_factory=WandbSettings)

    def __post_init__(self) -> None:
        _require(self.grad_stats_every >= 0, "logger.grad_stats_every must be >= 0.")
        _require(self.histograms_every >= 0, "logger.histograms_every must be >= 0.")
        _require(
            len(set(self.trackers)) == len(self.trackers),
            f"logger.trackers={list(self.trackers)} names a tracker twice.",
        )

    @property
    def active_trackers(self) -> list[str]:
        """logger.trackers, without tensorboard when logger.tensorboard=false."""
        return [t for t in self.trackers if t != "tensorboard" or self.tensorboard]


@dataclass(frozen=True)
class DistributedSettings:
    nproc_per_node: int = 1  # >1: `train` launches a worker group itself (torch elastic launcher)
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    strategy: Literal["ddp", "fsdp"] = "ddp"  # fsdp: parameters, gradients, optimizer sharded
    timeout_s: int = 120  # collective timeout: a dead peer ends the group instead of hanging

    def __post_init__(self) -> None:
        _positive("distributed.nproc_per_node", self.nproc_per_node)
        _positive("distributed.timeout_s", self.timeout_s)


@dataclass(frozen=True)
class RunSettings:
    """Top-level keys of the composed config plus the parsed non-component groups."""

    seed: int = 0
    device: str = "auto"
    name: str = "run"
    resume: str | None = None
    dry_run: bool = False
    imports: list[str] = field(default_factory=list)  # the user's modules (athanor.plugins)
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)
    logger: LoggerSettings = field(default_factory=LoggerSettings)
    distributed: DistributedSettings = field(default_factory=DistributedSettings)

    def __post_init__(self) -> None:
        if self.distributed.strategy == "fsdp":
            _require(
                self.trainer.ema.decay is None,
                "trainer.ema.decay is not supported with distributed.strategy=fsdp (the EMA "
                "would be a second, unsharded copy of the model); use distributed.strategy=ddp.",
            )
            _require(
                not self.trainer.sync_bn,
                "trainer.sync_bn=true works with distributed.strategy=ddp only.",
            )


def run_settings(config: dict[str, Any]) -> RunSettings:
    """Parse everything but the component groups (which their registries validate)."""
    from athanor.config.groups import COMPONENT_GROUPS

    rest = {k: v for k, v in config.items() if k not in COMPONENT_GROUPS}
    return parse(RunSettings, rest, "config")
