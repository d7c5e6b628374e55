"""The training loop. It knows nothing of Hydra, paths or the model's architecture: it steps,
evaluates, hands each evaluation to the run record, reports and asks for checkpoints at the right
moments. ``Progress.stop_reason`` says what ended it: epochs, max_steps, max_time,
early_stopping or interrupted."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from torch import nn

from athanor.data.loaders import Batch
from athanor.distributed import any_rank_each, is_distributed
from athanor.engine.eval_pass import evaluate
from athanor.engine.parts import Parts
from athanor.engine.state import Progress
from athanor.errors import InterruptedRun, NonFiniteError
from athanor.metrics.classification import MetricCounts
from athanor.metrics.monitor import Monitor, is_finite
from athanor.observe.reporter import Reporter
from athanor.process.clock import process_age
from athanor.record.record import RunRecord

log = logging.getLogger(__name__)


def chunks(batches: Iterable[Batch], size: int) -> Iterator[list[Batch]]:
    if size == 1:  # no accumulation: no islice/list per step
        return ([batch] for batch in batches)
    return _chunks(batches, size)


def _chunks(batches: Iterable[Batch], size: int) -> Iterator[list[Batch]]:
    it = iter(batches)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


@dataclass(frozen=True)
class RunHooks:
    """What the loop hands back to its run (engine/session.py)."""

    record: RunRecord  # each evaluation goes to it: ``evaluation(...)`` -> best so far?
    save: Callable[[Progress, bool], None]  # save(progress, best): write a checkpoint
    stop_requested: Callable[[], bool]  # a stop signal came
    early_stopping: Monitor | None = None  # what trainer.early_stopping watches (None: off)


class Loop:
    """Epochs of optimizer steps (``fit``), validations, checkpoints and stops. Each step's
    result goes to the reporter's ``on_step`` (its one observer, which feeds the trackers)."""

    def __init__(self, parts: Parts, reporter: Reporter, hooks: RunHooks):
        self.parts, self.stepper, self.settings = parts, parts.stepper, parts.settings
        self.loaders, self.device = parts.loaders, parts.device
        self.steps_per_epoch, self.total_steps = parts.steps_per_epoch, parts.total_steps
        self.reporter, self.record, self.save = reporter, hooks.record, hooks.save
        self.stop_requested, self.early_stopping = hooks.stop_requested, hooks.early_stopping
        self.started = time.monotonic()
        self.last_metrics: dict[str, float] = {}
        self.stepped = False
        self.distributed = is_distributed()  # the process group exists before the loop does
        # a time budget, or ranks that must agree, can stop the run; otherwise only a stop signal
        # can, and the loop asks for one with one call a step
        self.timed_or_shared = self.distributed or self.settings.trainer.max_time is not None

    def fit(self, p: Progress) -> dict[str, float]:
        t, ckpt = self.settings.trainer, self.settings.checkpoint
        while p.epoch < t.epochs and p.step < self.total_steps and p.stop_reason is None:
            self.reporter.epoch_start(p)
            for micro in chunks(self.loaders.train.epoch(p.epoch, start=p.batch), t.accumulate):
                if p.batch // t.accumulate >= self.steps_per_epoch or len(micro) < t.accumulate:
                    break  # leftover micro-batches that cannot fill an optimizer step
                # a log step ends a logging window: the loop's only per-window sync
                log_step = (p.step + 1) % t.log_every == 0 or p.step + 1 == self.total_steps
                if p.step == 0:  # the run's first batch (a resumed run's grid was logged)
                    self.reporter.image_grid(micro[0].inputs)
                observes = self.reporter.observes_grads  # off by default: no call a step
                on_grads = self.reporter.grad_observer(p.step + 1) if observes else None
                result = self.stepper.step(micro, p.step, on_grads=on_grads, measure=log_step)
                p.step += 1
                p.batch += len(micro)
                if not self.stepped:  # start-up cost, as users feel it (and scripts/bench.py reads)
                    self.stepped = True
                    log.info("first optimizer step %.2f s after process start", process_age())
                if log_step:
                    self.stepper.check_finite()
                self.reporter.on_step(p, result, log_step)
                if p.step >= self.total_steps:
                    p.stop_reason = "max_steps" if self._capped_by_max_steps() else None
                    break
                if t.stop_at_step and p.step >= t.stop_at_step:  # the plan itself is unchanged
                    p.stop_reason = "stop_at_step"
                    break
                # the epoch's last step is saved after validation (a resume then never repeats it)
                epoch_end = p.batch // t.accumulate >= self.steps_per_epoch
                if ckpt.every_steps and p.step % ckpt.every_steps == 0 and not epoch_end:
                    self._save(p, best=False)
                if (self.timed_or_shared or self.stop_requested()) and self._should_stop(
                    p, agree=log_step or epoch_end
                ):
                    break
            self.stepper.check_finite()  # never validate or save weights a NaN step produced
            epoch_done = p.stop_reason is None or p.stop_reason == "max_steps"
            if epoch_done:
                p.epoch, p.batch = p.epoch + 1, 0
            metrics, best = self.validate(p) if self._validation_due(p) else ({}, False)
            self.reporter.epoch_end(p, metrics)
            self._early_stopping(p, metrics)
            self.stepper.scheduler.step_validation(metrics)  # plateau: LR from the val metric
            if self._checkpoint_due(p) or p.stop_reason:
                self._save(p, best=best)
            if p.stop_reason == "interrupted":
                raise InterruptedRun(f"stopped by a signal at step {p.step}")
        if p.stop_reason is None:
            p.stop_reason = "epochs"  # trainer.epochs done (a max_steps cap that was not reached)
        return self.last_metrics

    def _capped_by_max_steps(self) -> bool:
        """Whether trainer.max_steps, not the epoch limit, sets the run's length."""
        max_steps = self.settings.trainer.max_steps
        return bool(max_steps) and max_steps < self.settings.trainer.epochs * self.steps_per_epoch

    def _save(self, p: Progress, best: bool) -> None:
        # the weights are checked (a sync over every parameter) only where a file will hold
        # them; with checkpoints off the losses and gradient norms are still checked
        self.stepper.check_finite(weights=self.settings.checkpoint.enabled, step=p.step)
        self.save(p, best)

    def _should_stop(self, p: Progress, agree: bool) -> bool:
        """A signal or the time budget. Alone, every step; under DDP the ranks must agree, and
        agreeing costs a collective and a device sync, so they do it at log steps and epoch ends."""
        if self.distributed and not agree:
            return False
        budget = self.settings.trainer.max_time
        out_of_time = budget is not None and time.monotonic() - self.started >= budget
        stop = self.stop_requested()
        if not (self.distributed or stop or out_of_time):
            return False
        stop, timeout = any_rank_each([stop, out_of_time], self.device)
        if stop:
            p.stop_reason = "interrupted"
        elif timeout:
            p.stop_reason = "max_time"
        return p.stop_reason is not None

    def _validation_due(self, p: Progress) -> bool:
        if p.stop_reason == "interrupted":
            return False
        finished = p.epoch >= self.settings.trainer.epochs or p.step >= self.total_steps
        return (
            finished or p.stop_reason is not None or p.epoch % self.settings.trainer.val_every == 0
        )

    def _checkpoint_due(self, p: Progress) -> bool:
        every, steps = self.settings.checkpoint.every_epochs, self.settings.checkpoint.every_steps
        finished = p.epoch >= self.settings.trainer.epochs or p.step >= self.total_steps
        on_step = steps is not None and p.step % steps == 0
        return finished or on_step or (every is not None and p.epoch % every == 0)

    def validate(self, p: Progress) -> tuple[dict[str, float], bool]:
        """Evaluate the model (and its EMA); the metrics go to the reporter and the run record.
        Returns the metrics and whether they are the best so far (best.pt). A non-finite metric
        fails the run: it is no result, and never becomes best.pt."""
        metrics, counts = self._evaluate(self.stepper.model, "val")
        if self.stepper.ema is not None:
            metrics.update(self._evaluate(self.stepper.ema.model, "val_ema")[0])
        bad = [name for name, value in metrics.items() if not is_finite(value)]
        if bad:
            raise NonFiniteError(
                f"The validation after epoch {p.epoch} (step {p.step}) gave non-finite "
                f"{', '.join(f'{n}={metrics[n]}' for n in bad)}; the run stops as failed and the "
                "last good checkpoint is kept. Lower the learning rate, enable trainer.grad_clip "
                "or check the validation data."
            )
        per_class = self.reporter.validation(p, metrics, counts)
        scalars = {"epoch": p.epoch, "step": p.step, "time": time.time(), **metrics}
        best = self.record.evaluation(scalars, **{"val/per_class_acc": per_class})
        self.last_metrics = metrics
        return metrics, best

    def _evaluate(self, model: nn.Module, prefix: str) -> tuple[dict[str, float], MetricCounts]:
        t = self.settings.trainer
        counts = evaluate(
            model,
            self.loaders.val.epoch(0),
            self.parts.eval_loss,
            self.parts.task,
            self.device,
            autocast=self.stepper.autocast,
            tta_flip=t.tta_flip,
            limit=t.limit_val_batches,
            prepare=self.parts.prepare,
        )
        return counts.metrics(prefix), counts

    def _early_stopping(self, p: Progress, metrics: dict[str, float]) -> None:
        monitor = self.early_stopping
        if monitor is None or monitor.name not in metrics or monitor.update(metrics):
            return
        patience = self.settings.trainer.early_stopping.patience
        if monitor.stale > patience:
            log.info(
                "Early stopping: %s has not improved for %d validations (best %.4f).",
                monitor.name,
                monitor.stale,
                monitor.best,
            )
            p.stop_reason = "early_stopping"
