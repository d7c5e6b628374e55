"""One training run: settings -> run folder -> build -> resume -> loop -> summary.

Whatever happens, the TensorBoard writer is closed, the summary says how the run ended
(completed / failed / interrupted) and the process group is destroyed (``finally``).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from athanor import distributed
from athanor.config.settings import RunSettings, run_settings
from athanor.distributed import Dist
from athanor.engine import dry_run as preflight
from athanor.engine.build import (
    build_augmentation,
    build_data,
    build_loaders,
    build_loss,
    build_model,
    build_optimizer,
    build_scheduler,
    plan_steps,
    validate,
)
from athanor.engine.ema import Ema
from athanor.engine.evaluate import check_monitors
from athanor.engine.loop import Loop, Progress
from athanor.engine.signals import StopSignals
from athanor.engine.speed import CompiledOrEager, to_channels_last
from athanor.engine.step import Stepper, warn_precision
from athanor.errors import ConfigError, InterruptedRun, PeerFailed
from athanor.observe.model_summary import format_summary, summarize
from athanor.observe.reporter import Reporter
from athanor.observe.trackers import NullTracker, TensorBoardTracker
from athanor.optim.param_groups import describe_groups
from athanor.record import resume
from athanor.record.checkpoints import Checkpointer, check_disk, state_bytes
from athanor.record.folder import RunDir
from athanor.record.provenance import provenance
from athanor.record.scratch import remove_scratch
from athanor.seeding import rng_state, seed_everything, set_determinism

log = logging.getLogger("athanor")


def count_params(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in model.parameters() if p.requires_grad)


class TrainingRun:
    def __init__(
        self,
        config: dict[str, Any],
        settings: RunSettings,
        d: Dist,
        device: torch.device,
        run: RunDir,
    ):
        self.config, self.settings, self.d, self.device, self.run = config, settings, d, device, run
        self.tracker: NullTracker = NullTracker()
        self.started = time.time()

    # -- build ---------------------------------------------------------------------------------
    def build(self, config: dict[str, Any] | None = None) -> None:
        """Build from ``config`` (default: the run's; a resumed run skips model.weights)."""
        s, cfg, device = self.settings, config or self.config, self.device
        seed_everything(s.seed)  # same initial weights on every rank and every run
        set_determinism(s.trainer.deterministic, device)
        self.bundle, options = build_data(cfg)
        self.data_options = options
        augmentation, mix = build_augmentation(cfg, self.bundle)
        from athanor.augment.mixing import build_mixer

        mixer = build_mixer(mix, self.bundle.num_classes)
        self.loaders = build_loaders(
            self.bundle,
            options,
            augmentation,
            mixer,
            seed=s.seed,
            d=self.d,
            device=device,
            overfit_batches=s.trainer.overfit_batches,
        )
        log.info(
            "data path: %s, %d batches per epoch of %d (global)",
            self.loaders.path,
            len(self.loaders.train),
            options.batch_size,
        )
        self.model = build_model(cfg, self.bundle).to(device)
        self.params = count_params(self.model)
        size = self.bundle.image_size
        sample = torch.zeros(1, self.bundle.channels, size, size, device=device)
        self.model_summary = summarize(self.model, sample)
        log.info("%s", format_summary(cfg["model"]["name"], self.model_summary))
        train_model = self._wrap(self.model)
        self.optimizer = build_optimizer(cfg, self.model)
        log.info("optim %s: %s", cfg["optim"]["name"], describe_groups(self.optimizer))
        self.steps_per_epoch, self.total_steps = plan_steps(s, len(self.loaders.train))
        self.scheduler = build_scheduler(
            cfg, self.optimizer, steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps
        )
        log.info(
            "schedule %s: %d optimizer steps (%d per epoch)",
            cfg["scheduler"]["name"],
            self.total_steps,
            self.steps_per_epoch,
        )
        loss_fn = build_loss(
            cfg["loss"], num_classes=self.bundle.num_classes, soft_targets=mix.enabled
        ).to(device)
        ema = None
        if s.trainer.ema.decay is not None:
            ema = Ema(
                self.model,
                s.trainer.ema.decay,
                every=s.trainer.ema.every,
                warmup=s.trainer.ema.warmup,
            )
        monitors = {
            "trainer.early_stopping.monitor": s.trainer.early_stopping.monitor,
            "checkpoint.monitor": s.checkpoint.monitor,
        }
        check_monitors(monitors, self.bundle.num_classes, ema=ema is not None)
        warn_precision(s.trainer.precision, device)
        self.prepare = to_channels_last if s.trainer.channels_last else None
        self.stepper = Stepper(
            self.model,
            train_model,
            self.optimizer,
            self.scheduler,
            loss_fn,
            s.trainer,
            device,
            ema,
            prepare=self.prepare,
        )
        seed_everything(s.seed + self.d.rank)  # dropout etc. differ across ranks

    def _wrap(self, model: nn.Module) -> nn.Module:
        """channels_last, SyncBatchNorm, DDP and torch.compile: the module the loop trains."""
        t = self.settings.trainer
        if t.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.d.enabled:
            if t.sync_bn and self.device.type != "cuda":
                log.warning(
                    "trainer.sync_bn=true needs CUDA (DDP refuses SyncBatchNorm on CPU): "
                    "BatchNorm statistics stay per process."
                )
            elif t.sync_bn:
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
                self.model = model
                synced = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
                log.info("sync_bn: %d BatchNorm layers synchronized across ranks", synced)
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        elif t.sync_bn:
            log.warning("trainer.sync_bn=true does nothing in a single process (no DDP).")
        if t.compile:
            log.info("trainer.compile=true: the first step compiles the model (can take a while)")
            model = CompiledOrEager(model)
        return model

    # -- checkpoints -------------------------------------------------------------------------------
    def snapshot(self, p: Progress) -> dict[str, Any]:
        ema = self.stepper.ema
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.stepper.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "progress": p.state_dict(),
            "epoch": p.epoch,
            "step": p.step,
            "batch_in_epoch": p.batch,
            "plan": self.plan(),
            "rng": rng_state(),
            "config": self.config,
        }

    def plan(self) -> dict[str, int]:
        return {"steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps}

    def check_disk(self) -> None:
        """Writable checkpoint folder, and room for a few checkpoints (weights, two optimizer
        moments and an EMA copy: ~4x the model's state)."""
        ckpt = self.settings.checkpoint
        if self.d.is_main and ckpt.enabled:
            check_disk(self.run.checkpoints, 4 * state_bytes(self.model), copies=ckpt.keep + 2)

    # -- run -----------------------------------------------------------------------------------
    def fit(self, signals: StopSignals, resumed: resume.Resumed | None = None) -> dict[str, float]:
        s = self.settings
        main = self.d.is_main
        self.checkpointer = Checkpointer(self.run.checkpoints, s.checkpoint, active=main)
        progress = Progress()
        purge_step = None
        if resumed is not None:
            trainable = resume.Trainable(
                self.model, self.optimizer, self.scheduler, self.stepper, self.plan()
            )
            resume.restore(resumed.state, resumed.path, trainable, progress)
            self.checkpointer.best = resumed.state.get("best_metric")
            purge_step = progress.step + 1  # TensorBoard drops what the killed run wrote later
        if main and s.logger.tensorboard:
            self.tracker = TensorBoardTracker(
                self.run.tensorboard, purge_step=purge_step, flush_secs=s.logger.flush_secs
            )
        self.reporter = Reporter(
            tracker=self.tracker,
            logger=s.logger,
            optimizer=self.optimizer,
            log_every=s.trainer.log_every,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            epochs=s.trainer.epochs,
            append_metrics=self.run.append_metrics,
            device=self.device,
            class_names=self.bundle.class_names or [str(i) for i in range(self.bundle.num_classes)],
            plots_dir=self.run.path / "plots",
            active=main,
        )
        if main and s.logger.image_grid and s.logger.tensorboard:
            # fork_rng: peeking at a batch must not shift the RNG the training run consumes
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                self.reporter.image_grid(next(iter(self.loaders.train.epoch(0))).inputs)
        if resumed is not None and main:
            # for the summary's best/final: the scalar part of each record, as the reporter keeps
            records = self.run.read_metrics()
            self.reporter.history = [
                {k: v for k, v in r.items() if not isinstance(v, dict)} for r in records
            ]

        def save(p: Progress, metrics: dict[str, float]) -> None:
            self.tracker.flush()  # events up to this step must survive a kill after the save
            # the snapshot only where it is written (not on other ranks, nor with checkpoints off)
            state = self.snapshot(p) if self.checkpointer.active else {}
            self.checkpointer.save(state, metrics=metrics)

        loop = Loop(
            stepper=self.stepper,
            loaders=self.loaders,
            settings=s,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            num_classes=self.bundle.num_classes,
            reporter=self.reporter,
            save=save,
            stop_requested=lambda: signals.requested,
            device=self.device,
            eval_loss=nn.CrossEntropyLoss().to(self.device),
            prepare=self.prepare,
        )
        self.progress = progress
        metrics = loop.fit(progress)
        if s.trainer.overfit_batches:
            self.reporter.overfit_verdict()
        return metrics

    def summary_fields(self) -> dict[str, Any]:
        history = self.reporter.history if hasattr(self, "reporter") else []
        monitor = self.settings.checkpoint.monitor
        p = getattr(self, "progress", Progress())
        fields: dict[str, Any] = {
            "epochs": p.epoch,
            "steps": p.step,
            "wall_time_s": round(time.time() - self.started, 2),
            "final": history[-1] if history else {},
            "monitor": monitor,
            "best": _best(history, monitor, self.settings.checkpoint.mode),
            "stop_reason": p.stop_reason,
        }
        if hasattr(self, "params"):
            fields["params"] = {"total": self.params[0], "trainable": self.params[1]}
        if hasattr(self, "model_summary"):
            fields["model"] = self.model_summary
        return fields

    def close(self) -> None:
        if hasattr(self, "reporter"):
            try:
                self.reporter.finish(self.config)
            except Exception as err:  # noqa: BLE001 - figures must not mask how the run ended
                log.warning("Could not write the final plots/hparams: %s", err)
            self.reporter.close()
        self.tracker.close()
        if hasattr(self, "checkpointer"):
            self.checkpointer.wait()  # the last checkpoint on disk before the summary says so


def _best(history: list[dict], key: str, mode: str) -> dict[str, Any]:
    scored = [h for h in history if isinstance(h.get(key), int | float)]
    if not scored:
        return {}
    pick = max if mode == "max" else min
    return pick(scored, key=lambda h: h[key])


def agree_on_run_dir(run_dir: Path | None, d: Dist) -> RunDir:
    """Rank 0's folder is the run's folder (Hydra's ${now:} differs between processes)."""
    path = distributed.broadcast_object(str(run_dir) if run_dir else None)
    if path is None:
        raise ConfigError("No run folder was given to the training run.")
    return RunDir(Path(path))


def train_run(config: dict[str, Any], run_dir: Path | None) -> float | None:
    """Train once. Returns the monitored metric's best value (for sweepers), or None."""
    distributed.export_slurm_env()
    d = distributed.env_dist()
    distributed.quiet_unless_main(d)
    with distributed.said_by_rank0(d):
        settings = run_settings(config)
        validate(config)
        device = distributed.resolve_device(settings.device, d)
    distributed.setup(d, device, settings.distributed.backend, settings.distributed.timeout_s)
    try:
        run = agree_on_run_dir(run_dir, d)
        with distributed.reported_once(d):
            return _train(config, settings, d, device, run)
    except Exception as err:
        if d.enabled and distributed.is_peer_failure(err):
            raise PeerFailed(
                f"rank {d.rank} stopped because another process of the group failed ({err})"
            ) from err
        raise
    finally:
        distributed.teardown()


def _dry_run(config, settings: RunSettings, d: Dist, device, run: RunDir) -> None:
    """Build, time a few steps, print the plan and estimate; the scratch folder goes away."""
    job = TrainingRun(config, settings, d, device, run)
    try:
        job.build()
        text = preflight.report(job, preflight.estimate(job))
        if d.is_main:
            print(text, flush=True)
    finally:
        remove_scratch(run.path)


def find_resume(config: dict[str, Any], run: RunDir) -> resume.Resumed | None:
    """The checkpoint to continue from, checked against the config before anything is written."""
    found = resume.find(config.get("resume"), run.checkpoints)
    if found is None:
        return None
    state, path = found
    changes = resume.config_changes(state["config"], config, path)
    for change in changes:
        log.info("resume: setting changed since the checkpoint: %s", change)
    return resume.Resumed(state, path, changes)


def _train(config, settings: RunSettings, d: Dist, device, run: RunDir) -> float | None:
    if settings.dry_run:
        return _dry_run(config, settings, d, device, run)
    resumed = find_resume(config, run)
    job = TrainingRun(config, settings, d, device, run)
    if d.is_main:
        run.path.mkdir(parents=True, exist_ok=True)
        if resumed is None:
            run.update_summary(
                status="running", started=time.strftime("%Y-%m-%dT%H:%M:%S"), **provenance()
            )
        else:
            run.truncate_metrics(after_step=resumed.state["step"])
            resumes = [*run.read_summary().get("resumes", []), resumed.record()]
            run.update_summary(status="running", resumes=resumes, **provenance())
    status, error = "failed", None
    signals = StopSignals()
    try:
        with signals:
            job.build(resume.without_weights(config) if resumed else None)
            job.check_disk()
            job.fit(signals, resumed)
        status = "completed"
    except InterruptedRun as err:
        status, error = "interrupted", str(err)
        raise
    except BaseException as err:
        error = f"{type(err).__name__}: {err}"
        if isinstance(err, KeyboardInterrupt):
            status = "interrupted"
        raise
    finally:
        job.close()
        if d.is_main:
            summary = run.update_summary(status=status, error=error, **job.summary_fields())
            log.info("run %s: %s in %s", status, run.path, summary.get("wall_time_s"))
        if status == "interrupted":
            signals.forward()  # e.g. submitit's requeue, after the checkpoint and the summary
    best = summary.get("best", {}).get(settings.checkpoint.monitor) if d.is_main else None
    return best if best is None or math.isfinite(best) else None
