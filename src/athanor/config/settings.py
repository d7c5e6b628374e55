"""Typed, frozen settings for everything that is not a registered component.

Each default and its meaning are written here once: the field's default, and its comment (the
comment lines above it, then the one at the end of its line). conf/<group>/default.yaml of the
trainer, checkpoint, logger and distributed groups and the reference are generated from these
classes (config/reference.py; ``athanor help --write-reference`` rewrites them).

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
    decay: float | None = None  # e.g. 0.999: evaluate an EMA of the weights as val_ema/*
    every: int = 1  # update every N optimizer steps
    warmup: bool = True  # decay ramps up as min(decay, (1+n)/(10+n))

    def __post_init__(self) -> None:
        if self.decay is not None:
            _require(0 < self.decay < 1, f"trainer.ema.decay={self.decay} must be in (0, 1).")
        _positive("trainer.ema.every", self.every)


@dataclass(frozen=True)
class EarlyStopping:
    monitor: str | None = None  # e.g. val/loss (with mode: min); any val/* or val_ema/* metric
    patience: int = 5  # validations without improvement before stopping
    mode: Literal["min", "max"] = "max"  # min | max: which way `monitor` improves
    min_delta: Annotated[float, NonNegative] = 0.0  # smaller changes do not count as improvement

    def __post_init__(self) -> None:
        _require(
            self.patience >= 0, f"trainer.early_stopping.patience={self.patience} must be >= 0."
        )


@dataclass(frozen=True)
class TrainerSettings:
    epochs: int = 20  # passes over the training data
    max_steps: int | None = None  # cap on optimizer steps
    stop_at_step: int | None = None  # stop there, the schedule unchanged (reproduce --steps)
    val_every: int = 1  # in epochs
    # in optimizer steps: train/* scalars and progress lines (each one syncs the device)
    log_every: int = 50
    precision: int | str = 32  # 32 | bf16 | fp16 (autocast; fp16 uses a GradScaler)
    # micro-batches per optimizer step (same gradients as one N x bigger batch)
    accumulate: int = 1
    # max gradient norm (or value, see grad_clip_mode); train/grad_norm is pre-clip
    grad_clip: float | None = None
    grad_clip_mode: Literal["norm", "value"] = "norm"  # norm | value
    # NHWC weights and inputs (faster convolutions on recent GPUs/CPUs)
    channels_last: bool = False
    # torch.compile of the whole model (falls back to eager with a message if it fails);
    # regional: each repeated block (engine/regions.py)
    compile: bool | Literal["regional"] = False
    activation_checkpointing: bool = False  # recompute each block's activations in backward
    deterministic: bool = False  # torch deterministic algorithms (cuDNN benchmark off)
    ema: EmaSettings = field(default_factory=EmaSettings)
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    # wall-clock budget: seconds or "HH:MM:SS" (validates, saves, stops)
    max_time: float | str | None = None
    skip_nonfinite: int = 0  # NaN/Inf steps to skip before failing
    # autograd anomaly mode: names the op that produced a NaN (slow)
    detect_anomaly: bool = False
    sync_bn: bool = False  # DDP: BatchNorm statistics over all ranks
    overfit_batches: int = 0  # >0: train on this many fixed batches, no augmentation
    limit_train_batches: int | None = None  # per epoch
    limit_val_batches: int | None = None  # per validation
    tta_flip: bool = False  # evaluate on the image and its mirror

    def __post_init__(self) -> None:
        _require(
            self.epochs >= 1,
            f"trainer.epochs={self.epochs} must be at least 1 (the number of passes over the "
            "training data).",
        )
        for key in (
            "max_steps",
            "stop_at_step",
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
    every_epochs: int | None = 1  # in epochs
    every_steps: int | None = None  # mid-epoch checkpoints every N optimizer steps
    keep_steps: int = 2  # newest periodic step_*.pt files kept (last.pt links the newest)
    # best.pt holds the model (+EMA) weights only; resume uses last.pt
    best_weights_only: bool = True
    monitor: str = "val/acc"  # best.pt follows this metric (val_ema/acc follows the EMA)
    mode: Literal["min", "max"] = "max"  # min | max: which way `monitor` improves
    save_last: bool = True  # last.pt: the newest checkpoint, what resume reads
    on_error: Literal["stop", "warn"] = "stop"  # stop | warn when a save fails (e.g. disk full)

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
    # null: the local store ./mlruns beside outputs/; or http://host:5000, sqlite:///m.db
    tracking_uri: str | None = None
    experiment: str = "athanor"  # MLflow experiment (created when missing)
    # best | last | none: a checkpoint as an artifact at the end
    log_checkpoint: Literal["best", "last", "none"] = "none"


@dataclass(frozen=True)
class WandbSettings:
    project: str = "athanor"  # W&B project
    entity: str | None = None  # team or user (null: your default)
    # online | offline (no network; `wandb sync <run>/wandb/offline-run-*` later) | disabled
    mode: Literal["online", "offline", "disabled"] = "online"
    dir: str | None = None  # null: <run>/wandb
    log_checkpoint: Literal["best", "last", "none"] = "none"  # best | last | none


@dataclass(frozen=True)
class LoggerSettings:
    # any of: tensorboard, mlflow, wandb, none (+ registered ones); the run fans out to all;
    # [] = none
    trackers: list[str] = field(default_factory=lambda: ["tensorboard"])
    # <run>/tb: scalars, images, histograms, HPARAMS (false: drop it from trackers)
    tensorboard: bool = True
    # auto: a bar on a TTY, plain log lines otherwise (CI, multirun) | bar | plain | none
    progress: Literal["auto", "bar", "plain", "none"] = "auto"
    # per-layer mean|grad|/mean|weight| every N optimizer steps (0 = off)
    grad_stats_every: int = 0
    histograms_every: int = 0  # weight/gradient histograms every N optimizer steps (0 = off)
    image_grid: bool = True  # the first augmented training batch as a TensorBoard image
    plots: bool = True  # <run>/plots: curves.png and confusion_val.png (+ TensorBoard image)
    flush_secs: Annotated[int, Positive] = 30  # in seconds: TensorBoard writes at least this often
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
    nproc_per_node: int = 1  # >1: `train` launches N worker processes itself
    backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: nccl on CUDA, gloo on CPU
    strategy: Literal["ddp", "fsdp"] = "ddp"  # fsdp: parameters, gradients, optimizer sharded
    timeout_s: int = 120  # collective timeout: a dead rank ends the group, no 30-min hang

    def __post_init__(self) -> None:
        _positive("distributed.nproc_per_node", self.nproc_per_node)
        _positive("distributed.timeout_s", self.timeout_s)


@dataclass(frozen=True)
class RunSettings:
    """Top-level keys of the composed config plus the parsed non-component groups."""

    seed: int = 0  # seeds python, numpy and torch; the data order is a function of it
    device: str = "auto"  # auto (cuda if available, else cpu) | cpu | cuda | cuda:N
    name: str = "run"  # the run's name, in its folder's name
    resume: str | None = None  # a run folder, a .pt checkpoint or auto: continue that run
    rewind: bool = False  # resume= an older checkpoint: its run's newer checkpoints are deleted
    dry_run: bool = False  # build, time a few steps, estimate the run, write nothing
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
            watched = [
                f"logger.{key}={getattr(self.logger, key)}"
                for key in ("grad_stats_every", "histograms_every")
                if getattr(self.logger, key)
            ]
            _require(
                not watched,
                f"{' and '.join(watched)} works with distributed.strategy=ddp only: under fsdp "
                "each rank holds a shard of every gradient, and rank 0 alone cannot read them "
                "(it would wait for the other ranks forever). Leave it out, or use ddp.",
            )


def run_settings(config: dict[str, Any]) -> RunSettings:
    """Parse everything but the component groups (which their registries validate)."""
    from athanor.config.groups import COMPONENT_GROUPS

    rest = {k: v for k, v in config.items() if k not in COMPONENT_GROUPS}
    return parse(RunSettings, rest, "config")
