"""``train … dry_run=true``: build everything, time a few real steps, print what the run would
be and how long it would take, and leave nothing behind."""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import torch

from athanor.config.groups import COMPONENT_GROUPS
from athanor.engine.eval_pass import evaluate
from athanor.models import model_label
from athanor.observe.insight import peak_memory
from athanor.observe.model_summary import format_summary

TIMED_STEPS = 5
TIMED_VAL_BATCHES = 3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_train_steps(job, steps: int) -> float:
    """Seconds per optimizer step, after one untimed warm-up step (compilation, allocator)."""
    t = job.settings.trainer
    micro = list(itertools.islice(job.loaders.train.epoch(0), t.accumulate))
    job.stepper.step(micro, 0)
    _sync(job.device)
    start = time.perf_counter()
    for i in range(steps):
        job.stepper.step(micro, i + 1)
    _sync(job.device)
    return (time.perf_counter() - start) / steps


def _time_val_batches(job, batches: int) -> float:
    start = time.perf_counter()
    loss = torch.nn.CrossEntropyLoss()
    evaluate(
        job.stepper.model,
        job.loaders.val.epoch(0),
        loss,
        job.bundle.num_classes,
        job.device,
        autocast=job.stepper.autocast,
        limit=batches,
    )
    _sync(job.device)
    return (time.perf_counter() - start) / max(1, min(batches, len(job.loaders.val)))


def estimate(job) -> dict[str, Any]:
    """Measured step times extrapolated to the planned run (validation included)."""
    t = job.settings.trainer
    per_step = _time_train_steps(job, TIMED_STEPS)
    per_val_batch = _time_val_batches(job, TIMED_VAL_BATCHES)
    epochs = min(t.epochs, math.ceil(job.total_steps / max(1, job.steps_per_epoch)))
    val_batches = min(len(job.loaders.val), t.limit_val_batches or len(job.loaders.val))
    validations = math.ceil(epochs / t.val_every) * (2 if job.stepper.ema is not None else 1)
    total = job.total_steps * per_step + validations * val_batches * per_val_batch
    return {
        "seconds_per_step": per_step,
        "seconds_per_val_batch": per_val_batch,
        "epochs": epochs,
        "estimated_wall_s": total,
    }


def _duration(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}"


def report(job, est: dict[str, Any]) -> str:
    cfg, t, opts = job.config, job.settings.trainer, job.data_options
    components = ", ".join(f"{g}={cfg[g]['name']}" for g in COMPONENT_GROUPS)
    lines = [
        "dry run: everything builds; nothing was written.",
        f"  components      {components}",
        f"  precision       {t.precision}, accumulate {t.accumulate}, device {job.device}",
        f"  data            {len(job.bundle.train)} train / {len(job.bundle.val)} val samples, "
        f"batch {opts.batch_size}, path {job.loaders.path}",
        f"  steps           {job.steps_per_epoch} per epoch, {job.total_steps} in total "
        f"({est['epochs']} epochs)",
        f"  speed           {est['seconds_per_step'] * 1000:.1f} ms per step, "
        f"{est['seconds_per_val_batch'] * 1000:.1f} ms per validation batch",
        f"  peak memory     {', '.join(f'{k} {v:.3f}' for k, v in peak_memory(job.device).items())}",
        f"  estimated time  {_duration(est['estimated_wall_s'])} (h:mm:ss) for the full run",
        format_summary(model_label(cfg["model"]), job.model_summary),
    ]
    return "\n".join(lines)
