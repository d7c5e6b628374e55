"""A built training run with its train state, its run record and its observers (the trackers,
the progress reporter): ``open`` starts or resumes the record, ``fit`` runs the loop with
checkpoints, ``close`` ends the observers and writes how the run ended."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import torch

from athanor.config.settings import CheckpointSettings
from athanor.distributed import Dist
from athanor.engine.loop import Loop, RunHooks
from athanor.engine.parts import Parts, train_state
from athanor.engine.regions import compile_cost
from athanor.engine.state import Progress
from athanor.metrics.monitor import Monitor
from athanor.observe.reporter import Reporter
from athanor.observe.trackers import NullTracker, open_trackers
from athanor.process.signals import StopSignals, signal_name
from athanor.record import environment, fingerprint, resume
from athanor.record.checkpoints import (
    Checkpointer,
    check_disk,
    checkpoint_bytes,
    saved_progress,
    state_bytes,
)
from athanor.record.folder import RunDir
from athanor.record.record import MetricsLog, RunRecord

log = logging.getLogger("athanor")


def checkpoint_policy(settings: CheckpointSettings, parts: Parts) -> CheckpointSettings:
    """A run of one epoch or less (a smoke test, `trainer.max_steps` under an epoch) keeps one
    file: best.pt is a link to the last save rather than a second copy of the weights, and one
    periodic file is kept. Mid-epoch saves (checkpoint.every_steps) keep their settings."""
    short = parts.total_steps <= parts.steps_per_epoch and not settings.every_steps
    if not short or not settings.enabled:
        return settings
    log.info(
        "checkpoints: a run of %d step(s), one epoch or less: one file (best.pt links to it)",
        parts.total_steps,
    )
    # best.pt then links to the step file rather than holding a second copy of the weights
    return dataclasses.replace(settings, best_weights_only=not short, keep_steps=1)


def _consolidated_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """An fsdp model's full weights (engine/sharding.py, imported by fsdp runs only: see
    engine/parts.py's _sharded_state)."""
    from athanor.engine.sharding import consolidated_weights

    return consolidated_weights(model)


class TrainingRun:
    """A built run with its state, record and observers: ``open`` starts (or resumes) the
    record, ``fit`` trains, ``close`` ends the observers and writes how the run ended."""

    def __init__(self, config: dict[str, Any], parts: Parts, run: RunDir, d: Dist):
        self.config, self.parts, self.run, self.d = config, parts, run, d
        s = parts.settings
        self.progress = Progress()
        self.metrics_log = MetricsLog(Monitor(s.checkpoint.monitor, s.checkpoint.mode))
        self.record = RunRecord(run, self.metrics_log, active=d.is_main)
        es = s.trainer.early_stopping
        self.early_stopping = Monitor(es.monitor, es.mode, es.min_delta) if es.monitor else None
        self.state = train_state(
            parts,
            self.progress,
            d,
            metrics_log=self.metrics_log,
            early_stopping=self.early_stopping,
        )
        self.tracker: NullTracker = NullTracker()
        self.reporter: Reporter | None = None
        self.checkpointer: Checkpointer | None = None
        self.resumed = False

    def open(self, resumed: resume.Resumed | None) -> None:
        """The run starts: its record (and folder), and the saved state when resuming."""
        # the files data.on_bad_file=skip left out are part of what this run trained on
        fields = {
            **environment.environment(),
            "rerun": self._rerun() if self.d.is_main else {},
            "skipped_files": getattr(self.parts.bundle, "skipped_files", []),
        }
        if fields["slurm"] and self.d.is_main:
            log.info("%s", environment.describe_slurm_job(fields["slurm"]))
        if resumed is None:
            self.record.start(**fields)
            return
        if self.d.is_main:
            resumed.rewind()  # rewind=true: the run has started, the newer checkpoints go
        self.record.resume(resumed.record(), saved_progress(resumed.state)["step"], **fields)
        self.state.load_state_dict(resumed.state["state"], resumed.path)
        p, self.resumed = self.progress, True
        log.info(
            "resumed from %s: epoch %d, step %d, batch %d of the epoch",
            resumed.path,
            p.epoch,
            p.step,
            p.batch,
        )

    def _rerun(self) -> dict[str, Any]:
        """What a re-run needs beyond the command line, for summary.json: the device, the seed
        and determinism switches, and the files written beside it (resolved config, patch of
        uncommitted changes, data fingerprint) by name."""
        import yaml

        s, record, run = self.parts.settings, self.record, self.run
        data = fingerprint.data_fingerprint(self.config["data"], self.parts.bundle)
        rerun = {
            "device": environment.device_info(self.parts.device, self.d.world),
            "determinism": environment.determinism(s.seed, s.trainer.deterministic),
            "config": record.attach(
                run.resolved_config, yaml.safe_dump(self.config, sort_keys=False)
            ),
            "data_fingerprint": {
                "file": record.attach(run.data_fingerprint, json.dumps(data, indent=2) + "\n"),
                "sha256": fingerprint.digest(data),
            },
            "patch": None,
        }
        patch = environment.uncommitted_patch(environment.code_folder())
        if patch is not None:
            rerun["patch"] = {"file": record.attach(run.patch, patch[0]), **patch[1]}
        return rerun

    def has_checkpoint(self) -> bool:
        """Whether a cut run keeps something: a checkpoint is on disk (or they are off)."""
        enabled = self.parts.settings.checkpoint.enabled
        return not enabled or any(self.run.checkpoints.glob("*.pt"))

    def check_disk(self) -> None:
        """Writable checkpoint folder, and room for a few checkpoints (weights, two optimizer
        moments and an EMA copy: ~4x the model's state)."""
        ckpt = self.parts.settings.checkpoint
        if self.d.is_main and ckpt.enabled:
            need = 4 * state_bytes(self.parts.model)
            check_disk(self.run.checkpoints, need, copies=ckpt.keep_steps + 2)

    def _observers(self) -> Reporter:
        s, parts, main = self.parts.settings, self.parts, self.d.is_main
        if main:
            # a resumed run: the trackers drop what the killed process logged after the checkpoint
            resumed_step = self.progress.step if self.resumed else None
            self.tracker = open_trackers(
                s.logger, self.run.path, resumed_step=resumed_step, config=self.config
            )
        bundle = parts.bundle
        return Reporter(
            tracker=self.tracker,
            logger=s.logger,
            optimizer=parts.optimizer,
            steps_per_epoch=parts.steps_per_epoch,
            total_steps=parts.total_steps,
            epochs=s.trainer.epochs,
            device=parts.device,
            class_names=bundle.class_names or [str(i) for i in range(bundle.num_classes)],
            plots_dir=self.run.plots,
            active=main,
            train_metric=parts.task.train_metric(),
        )

    def fit(self, signals: StopSignals) -> dict[str, float]:
        s, parts = self.parts.settings, self.parts
        self.checkpointer = checkpointer = Checkpointer(
            self.run.checkpoints, checkpoint_policy(s.checkpoint, parts), active=self.d.is_main
        )
        self.reporter = self._observers()  # the loop hands it the first batch's image grid

        data_spec = parts.bundle.spec()  # normalization and input facts, for evaluate/export
        sharded = parts.shards if s.checkpoint.enabled else None

        def save(p: Progress, best: bool) -> None:
            with signals.shielded():  # a second Ctrl-C waits for a complete file
                self.tracker.flush()  # events up to this step must survive a kill after the save
                weights = None
                if sharded is not None:  # every rank: its shards, then (best) the joined weights
                    checkpointer.wait()  # the previous save's pruning is done with the folder
                    sharded.write(self.run.checkpoints, p.step)
                    weights = _consolidated_weights(parts.model) if best else None
                self.state.gather()  # every rank's part of it (e.g. its RNG states)
                # the state only where it is written (not on other ranks, nor with checkpoints off)
                if checkpointer.active:
                    checkpoint = {
                        "config": self.config,
                        "data": data_spec,
                        "state": self.state.state_dict(),
                    }
                    checkpointer.save(checkpoint, step=p.step, best=best, weights=weights)

        hooks = RunHooks(self.record, save, lambda: signals.requested, self.early_stopping)
        loop = Loop(parts, self.reporter, hooks)
        metrics = loop.fit(self.progress)
        if sharded is not None:  # evaluate, export and model.weights read plain tensors
            weights = _consolidated_weights(parts.model)
            state = self.state.state_dict()  # the weights-only parts: progress, task
            checkpoint = {"config": self.config, "data": data_spec, "state": state}
            path = checkpointer.save_consolidated(checkpoint, weights)
            if path is not None:
                log.info("fsdp: consolidated weights in %s", path)
        if parts.compiled is not None:
            compiled = self._compiled()["compiled"]
            log.info(
                "trainer.compile=regional: compiled %s; %.1f s spent compiling (start-up)",
                compiled["blocks"],
                compiled["compile_s"],
            )
        if s.trainer.overfit_batches:
            self.reporter.overfit_verdict()
        return metrics

    def close(
        self, status: str, error: str | None, signals: StopSignals | None = None
    ) -> dict[str, Any]:
        """End the observers (their failures never mask how the run ended), wait for the last
        checkpoint, then write how the run ended. A stop signal that came after the last step
        (during the final save, the figures or the summary itself) makes a completed run
        ``interrupted``: the command then exits 130, whenever the signal came."""
        if self.reporter is not None:
            try:
                self.reporter.finish(self.config, self.run.read_metrics())
            except Exception as err:  # noqa: BLE001 - figures must not mask how the run ended
                log.warning("Could not write the final plots/hparams: %s", err)
            self.reporter.close()
        if self.checkpointer is not None:
            self.checkpointer.wait()  # the last checkpoint is on disk before the summary says so
            if self.checkpointer.active:
                disk = checkpoint_bytes(self.run.checkpoints)
                log.info("checkpoints: %.1f MB in %s", disk / 2**20, self.run.checkpoints)
        summary = self._finish(status, error, signals)
        if summary["status"] == "completed" and signals is not None and signals.requested:
            summary = self._finish(status, error, signals)  # the signal came during the write
        self.tracker.finish(summary["status"])  # after the summary: trackers keep it as artifact
        return summary

    def _finish(self, status: str, error: str | None, signals: StopSignals | None):
        p = self.progress
        if status == "completed" and signals is not None and signals.requested:
            name = signal_name(signals.received)
            status, error = (
                "interrupted",
                f"stopped by {name} after the last step (step {p.step}); its checkpoint is saved",
            )
        return self.record.finish(
            status,
            error,
            epochs=p.epoch,
            steps=p.step,
            stop_reason=p.stop_reason if status == "completed" else status,
            params=self.parts.params,
            model=self.parts.model_summary,
            checkpoint_bytes=checkpoint_bytes(self.run.checkpoints) if self.d.is_main else 0,
            **self._compiled(),
        )

    def _compiled(self) -> dict[str, Any]:
        """trainer.compile=regional: what was compiled and the seconds it cost (summary.json)."""
        if self.parts.compiled is None:
            return {}
        return {"compiled": {**self.parts.compiled, "compile_s": compile_cost()}}
