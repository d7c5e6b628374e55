"""What one training run is built of, in dependency order: data -> loaders -> model (wrapped for
channels_last / SyncBatchNorm / DDP / compile) -> optimizer -> schedule -> losses -> stepper.

``build_parts`` returns them as one ``Parts`` value; the run (engine/run.py) lists their state in
a ``TrainState`` (``train_state``), and the loop drives them. Each build step is logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from athanor.config.settings import RunSettings, TrainerSettings
from athanor.data import DataBundle, DataOptions
from athanor.data.pipeline import Loaders, build_loaders
from athanor.distributed import Dist
from athanor.engine.blocks import find_blocks
from athanor.engine.build import (
    build_augmentation,
    build_data,
    build_loss,
    build_model,
    build_optimizer,
    build_scheduler,
    build_task,
    model_blocks,
    plan_steps,
)
from athanor.engine.ema import Ema
from athanor.engine.eval_pass import validation_loss
from athanor.engine.regions import checkpoint_activations, compile_regions
from athanor.engine.speed import CompiledOrEager, to_channels_last
from athanor.engine.state import Counter, ModelState, Progress, RngState, Stateful, TrainState
from athanor.engine.step import Models, Objective, Stepper, warn_precision
from athanor.metrics.monitor import check_monitors
from athanor.models import model_label
from athanor.observe.model_summary import CountingForward, format_summary
from athanor.optim.param_groups import describe_groups
from athanor.optim.schedulers import Schedule
from athanor.record.resume import OptimizerState, ScheduleState
from athanor.seeding import seed_everything, set_determinism
from athanor.tasks import Task

if TYPE_CHECKING:  # imported by fsdp runs only: see _sharded_state
    from athanor.engine.sharding import ShardedState

log = logging.getLogger("athanor")


# the composed config as plain data (cli/ converts it once): nested dicts, lists and scalars
Config = dict[str, object]


@dataclass
class Parts:
    config: Config
    settings: RunSettings
    device: torch.device
    bundle: DataBundle  # splits, classes, image size
    data_options: DataOptions
    loaders: Loaders  # train / val and the data path
    model: nn.Module  # the bare model (what a checkpoint holds)
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    stepper: Stepper  # holds the wrapped model, the grad scaler and the EMA
    eval_loss: nn.Module
    steps_per_epoch: int
    total_steps: int
    model_summary: dict[str, object]
    params: dict[str, int]
    task: Task  # outputs, loss targets, predictions, metrics
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None  # e.g. channels_last inputs
    shards: ShardedState | None = None  # distributed.strategy=fsdp: model + optimizer state
    compiled: dict[str, object] | None = None  # trainer.compile=regional: what was compiled

    @property
    def plan(self) -> dict[str, int]:
        return {"steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps}


def build_parts(config: Config, settings: RunSettings, d: Dist, device: torch.device) -> Parts:
    """Build every part of a run from ``config`` (a resumed run passes it without model.weights)."""
    s, cfg = settings, config
    seed_everything(s.seed)  # same initial weights on every rank and every run
    set_determinism(s.trainer.deterministic, device)
    bundle, options = build_data(cfg)
    task = bind_task(cfg, bundle, device)
    augmentation, mix = build_augmentation(cfg, bundle)
    from athanor.augment.mixing import build_mixer

    loaders = build_loaders(
        bundle,
        options,
        augmentation,
        build_mixer(mix, bundle.num_classes),
        seed=s.seed,
        d=d,
        device=device,
        overfit_batches=s.trainer.overfit_batches,
        task=task,
    )
    log.info(
        "data path: %s, %d batches per epoch of %d (global)",
        loaders.path,
        len(loaders.train),
        options.batch_size,
    )
    counting = CountingForward()  # the probe's pass counts the FLOPs: no second pass
    model = build_model(cfg, bundle, forward=counting).to(device)
    model_summary = counting.summary(model)
    log.info("%s", format_summary(model_label(cfg["model"]), model_summary))
    blocks = model_blocks(cfg)
    model, train_model, compiled = wrap_model(
        model, s.trainer, d, device, strategy=s.distributed.strategy, blocks=blocks
    )
    optimizer = build_optimizer(cfg, model)
    sharded = d.enabled and s.distributed.strategy == "fsdp"
    log.info("optim %s: %s", cfg["optim"]["name"], describe_groups(optimizer))
    steps_per_epoch, total_steps = plan_steps(s, len(loaders.train))
    schedule = build_scheduler(
        cfg, optimizer, steps_per_epoch=steps_per_epoch, total_steps=total_steps
    )
    log.info(
        "schedule %s: %d optimizer steps (%d per epoch)",
        cfg["scheduler"]["name"],
        total_steps,
        steps_per_epoch,
    )
    loss_fn = build_loss(
        cfg["loss"], num_classes=bundle.num_classes, model=model, soft_targets=mix.enabled
    )
    ema = _ema(model, s.trainer)
    monitors = {
        "trainer.early_stopping.monitor": s.trainer.early_stopping.monitor,
        "checkpoint.monitor": s.checkpoint.monitor,
        "scheduler.monitor": cfg["scheduler"].get("monitor", "val/loss")
        if cfg["scheduler"]["name"] == "plateau"
        else None,
    }
    check_monitors(monitors, task, ema=ema is not None)
    warn_precision(s.trainer.precision, device)
    prepare = to_channels_last if s.trainer.channels_last else None
    stepper = Stepper(
        Models(model, train_model, ema, prepare),
        optimizer,
        schedule,
        Objective(loss_fn.to(device), task, cfg["loss"]["name"], pretrained(cfg["model"])),
        s.trainer,
        device,
    )
    seed_everything(s.seed + d.rank)  # dropout etc. differ across ranks
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Parts(
        config=config,
        settings=settings,
        device=device,
        bundle=bundle,
        data_options=options,
        loaders=loaders,
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        stepper=stepper,
        eval_loss=validation_loss(cfg["loss"], bundle.num_classes, model).to(device),
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        model_summary=model_summary,
        params={"total": total, "trainable": trainable},
        prepare=prepare,
        task=task,
        shards=_sharded_state(model, optimizer) if sharded else None,
        compiled=compiled,
    )


def _sharded_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> ShardedState:
    """The fsdp run's checkpoint state. engine/sharding.py is imported by fsdp runs only: its
    torch.distributed.checkpoint and fsdp imports cost every other run ~1 s of start-up (2.3 s on
    a busy 2-core machine), a tenth of a short folder run (scripts/bench.py --rows folder)."""
    from athanor.engine.sharding import ShardedState

    return ShardedState(model, optimizer)


def bind_task(cfg: Config, bundle: DataBundle, device: torch.device) -> Task:
    """The task, bound to the data's targets: the bundle's num_classes becomes its outputs."""
    task = build_task(cfg)
    bundle.num_classes = task.bind(bundle.info["targets"])
    if len(bundle.class_names) != bundle.num_classes:
        bundle.class_names = [str(i) for i in range(bundle.num_classes)]
    log.info("%s", task.describe())
    return task.to(device)


def pretrained(model_spec: dict[str, object]) -> bool:
    """Weights loaded at build time (model.weights, or a zoo's pretrained flag/weights name)."""
    return bool(model_spec.get("weights") or model_spec.get("pretrained"))


def _ema(model: nn.Module, t: TrainerSettings) -> Ema | None:
    if t.ema.decay is None:
        return None
    return Ema(model, t.ema.decay, every=t.ema.every, warmup=t.ema.warmup)


def wrap_model(
    model: nn.Module,
    t: TrainerSettings,
    d: Dist,
    device: torch.device,
    strategy: str = "ddp",
    blocks: list[str] | None = None,
) -> tuple[nn.Module, nn.Module, dict[str, object] | None]:
    """channels_last, activation checkpointing and regional compile of the blocks (``blocks``:
    their class names, None: the zoo's), SyncBatchNorm, DDP or FSDP, and torch.compile. Returns
    (the model, possibly with SyncBatchNorm layers or sharded; the module the loop trains; what
    regional compile compiled)."""
    sharded = d.enabled and strategy == "fsdp"
    if t.channels_last and sharded:
        # FSDP2 shards contiguous parameters only (NotImplementedError otherwise): the weights
        # stay as they are; the inputs are still made channels_last (Parts.prepare)
        log.info("trainer.channels_last with fsdp: channels_last inputs, weights left contiguous")
    elif t.channels_last:
        model.to(memory_format=torch.channels_last)
    found = find_blocks(model, blocks)
    if t.activation_checkpointing:
        checkpoint_activations(model, found)
    compiled = compile_regions(model, found) if t.compile == "regional" else None
    train_model = model
    if sharded:
        from athanor.engine.sharding import shard_model  # see _sharded_state

        model = train_model = shard_model(model, found, t.precision, device, d.world)
    elif d.enabled:
        if t.sync_bn and device.type != "cuda":
            log.warning(
                "trainer.sync_bn=true needs CUDA (DDP refuses SyncBatchNorm on CPU): "
                "BatchNorm statistics stay per process."
            )
        elif t.sync_bn:
            model = train_model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            synced = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
            log.info("sync_bn: %d BatchNorm layers synchronized across ranks", synced)
        ids = [device.index] if device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    elif t.sync_bn:
        log.warning("trainer.sync_bn=true does nothing in a single process (no DDP).")
    if t.compile is True:
        log.info("trainer.compile=true: the first step compiles the model (can take a while)")
        train_model = CompiledOrEager(train_model)
    return model, train_model, compiled


def train_state(parts: Parts, progress: Progress, d: Dist, **more: Stateful | None) -> TrainState:
    """The one list of what a checkpoint holds, in restore order (progress first: the schedule
    may be stepped up to its step; RNG last, every rank's). ``more``: the run's own parts
    (metrics log, early stopping), placed before the RNG states."""
    stepper = parts.stepper
    return TrainState(
        {
            "progress": progress,
            "model": parts.shards or ModelState(parts.model),  # fsdp: model and optimizer
            "optimizer": None if parts.shards else OptimizerState(parts.optimizer),
            "schedule": ScheduleState(parts.schedule, parts.optimizer, parts.plan, progress),
            "grad_scaler": stepper.scaler,
            "skipped_steps": Counter(stepper, "nonfinite_skipped"),
            "ema": stepper.ema,
            "task": parts.task if parts.task.state_dict() else None,
            **more,
            "rng": RngState(parts.device, d.rank, d.world),
        }
    )
