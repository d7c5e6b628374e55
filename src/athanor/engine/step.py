"""One optimizer step: mixed precision, gradient accumulation, clipping, non-finite guard, EMA.

``Stepper.step`` reads top to bottom: forward and backward per micro-batch (``_micro_batch``),
unscale and clip, the non-finite guard (``FiniteWatch``: no sync per step), the optimizer, the
schedule and the EMA. It returns a ``StepResult`` (metrics/step.py) for the loop to hand to its
observer. The step takes the model as ``Models`` and what it minimizes as ``Objective``."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from athanor.config.settings import TrainerSettings
from athanor.data.loaders import Batch
from athanor.data.plain import call_model
from athanor.engine.ema import Ema
from athanor.errors import NonFiniteError
from athanor.losses import WeightedSum
from athanor.metrics.step import StepResult
from athanor.observe.insight import check_initial_loss, report_unused
from athanor.optim.schedulers import Schedule
from athanor.tasks import Task

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# a forward/backward's (detached mean loss, (detached outputs, targets) per micro-batch, samples)
Forward = tuple[torch.Tensor, tuple[tuple[torch.Tensor, torch.Tensor], ...], int]


def autocast_factory(
    precision: str, device: torch.device
) -> Callable[[], contextlib.AbstractContextManager]:
    """A zero-argument context factory: autocast for bf16/fp16, a no-op for 32."""
    if precision == "32":
        return contextlib.nullcontext
    dtype = DTYPES[precision]
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def warn_precision(precision: str, device: torch.device) -> None:
    """Say so when a precision choice does nothing useful (or hurts) on this device."""
    if device.type == "cpu" and precision == "fp16":
        log.warning(
            "trainer.precision=fp16 on CPU: autocast fp16 is slow and gains nothing here; "
            "use precision=32 (or bf16 on CPUs with AMX/AVX512-bf16)."
        )
    elif device.type == "cpu" and precision == "bf16":
        log.warning(
            "trainer.precision=bf16 on CPU: only CPUs with native bf16 (AMX, AVX512-bf16) "
            "gain speed; without it this runs many times slower than precision=32."
        )
    elif device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        log.warning("trainer.precision=bf16: this GPU has no native bf16; use fp16 instead.")


class FiniteWatch:
    """Non-finite losses and gradient norms, checked without a device sync per step: values are
    kept as device tensors and inspected together at the loop's sync points (log steps, epoch
    ends, before a checkpoint). A sync per step would stall a GPU pipeline for nothing."""

    LIMIT = 256  # values kept before a check is forced (bounds memory when log_every is huge)

    def __init__(self) -> None:
        self.pending: list[tuple[int, str, torch.Tensor]] = []  # (optimizer step, what, value)

    def add(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor | None) -> None:
        """``loss`` and ``grad_norm`` are detached already (the stepper's results)."""
        self.pending.append((step, "loss", loss))
        if grad_norm is not None:
            self.pending.append((step, "gradient norm", grad_norm))
        if len(self.pending) >= self.LIMIT:
            self.raise_if_nonfinite()

    def first_bad(self) -> tuple[int, str] | None:
        """(step, what) of the first non-finite value since the last check; clears the list."""
        if not self.pending:
            return None
        values = torch.stack([v for _, _, v in self.pending]).float()  # stack promotes dtypes
        pending, self.pending = self.pending, []
        if math.isfinite(values.sum().item()):  # the one sync; NaN or Inf anywhere spoils the sum
            return None
        # a bad value, or finite ones whose sum overflowed: find which, if any
        finite = torch.isfinite(values).tolist()
        return next(
            ((step, what) for (step, what, _), ok in zip(pending, finite, strict=True) if not ok),
            None,
        )

    def raise_if_nonfinite(self) -> None:
        bad = self.first_bad()
        if bad is not None:
            raise nonfinite_error(*bad)


def nonfinite_error(step: int, what: str) -> NonFiniteError:
    return NonFiniteError(
        f"The {what} became NaN/Inf at optimizer step {step}. The last good checkpoint is "
        "kept. Lower the learning rate, enable trainer.grad_clip, check the inputs, or allow "
        "a few bad steps with trainer.skip_nonfinite=N (trainer.detect_anomaly=true finds the op)."
    )


@dataclass(frozen=True)
class Models:
    """The model as the step sees it."""

    model: nn.Module  # the bare model: its parameters, what a checkpoint holds
    train: nn.Module  # what the forward calls: the DDP / compiled wrapper, or the model itself
    ema: Ema | None = None  # trainer.ema.decay
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None  # e.g. channels_last inputs


@dataclass(frozen=True)
class Objective:
    """What the step minimizes, and for which task."""

    loss: nn.Module  # (outputs, targets) -> scalar mean over the batch
    task: Task | None = None  # None: softmax classification (scripts and tests build no task)
    loss_name: str = "cross_entropy"  # the registered name: the task's expected first loss
    pretrained: bool = False  # weights loaded at build: no fresh-model first-loss check


class Stepper:
    """One optimizer step over a few micro-batches (``step``), then the finite checks the loop
    asks for at its sync points (``check_finite``)."""

    def __init__(
        self,
        models: Models,
        optimizer: torch.optim.Optimizer,
        scheduler: Schedule,
        objective: Objective,
        settings: TrainerSettings,
        device: torch.device,
    ):
        self.model, self.train_model, self.ema = models.model, models.train, models.ema
        self.prepare = models.prepare
        self.optimizer, self.scheduler, self.loss_fn = optimizer, scheduler, objective.loss
        self.settings, self.device, self.objective = settings, device, objective
        self.autocast = autocast_factory(settings.precision, device)
        fp16 = settings.precision == "fp16"
        self.scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        # the hot path skips what does nothing here: the disabled scaler's calls, and the
        # null contexts of fp32 (each costs a few Python calls on a ~0.5 ms step)
        self.scaled = fp16
        self.fp32 = settings.precision == "32"
        self.clip_norm = settings.grad_clip is not None and settings.grad_clip_mode == "norm"
        self.touches_grads = fp16 or settings.grad_clip is not None  # unscales or clips each step
        self.nonfinite_skipped = 0
        self.first_step_checked = False
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.watch = FiniteWatch()
        # skipping a bad step needs its verdict before optimizer.step(): a sync every step
        self.check_every_step = settings.skip_nonfinite > 0
        # the outputs go to the task's training metric (train/acc); a task without one keeps none
        task = objective.task
        self.keep_outputs = task is None or task.train_metric() is not None
        inner = getattr(self.loss_fn, "loss", self.loss_fn)  # under loss.flooding
        self.terms = inner if isinstance(inner, WeightedSum) else None  # loss=terms

    def _sync_context(self, last: bool):
        """DDP: all-reduce gradients only on the last micro-batch of an accumulation."""
        if not last and hasattr(self.train_model, "no_sync"):
            return self.train_model.no_sync()
        return contextlib.nullcontext()

    def step(
        self,
        micro_batches: Sequence[Batch],
        step: int,
        *,
        on_grads: Callable[[nn.Module], None] | None = None,
        measure: bool = False,
    ) -> StepResult:
        """Forward/backward over the micro-batches, then one optimizer step. ``step`` counts the
        optimizer steps done before this one; ``on_grads`` sees the final (clipped) gradients;
        ``measure`` asks for the gradient norm (otherwise only computed when clipping needs it).
        Non-finite values are caught by ``check_finite`` (or at once with skip_nonfinite)."""
        try:
            if self.settings.detect_anomaly:  # slow: names the op that made a NaN
                with torch.autograd.set_detect_anomaly(True):
                    loss, outputs, count = self._forward_backward(micro_batches, step)
            else:
                loss, outputs, count = self._forward_backward(micro_batches, step)
        except RuntimeError as err:
            if not self.settings.detect_anomaly or "nan" not in str(err).lower():
                raise
            first = str(err).strip().splitlines()[0]
            raise NonFiniteError(
                f"trainer.detect_anomaly found NaN in the backward pass at optimizer step "
                f"{step + 1}: {first}"
            ) from err
        measure = measure or self.check_every_step
        grad_norm = self._unscale_and_clip(measure) if measure or self.touches_grads else None
        # fp16: inf gradients are the GradScaler's business (it skips the step itself)
        self.watch.add(step + 1, loss, None if self.scaled else grad_norm)
        if self.check_every_step and self._skip_nonfinite():
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
            return StepResult(loss, count, grad_norm, outputs, skipped=True)
        if on_grads is not None:
            on_grads(self.model)
        if self.scaled:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model, step + 1)
        terms = self.terms.last if self.terms is not None else None
        return StepResult(loss, count, grad_norm, outputs, terms=terms)

    def check_finite(self, weights: bool = False, step: int | None = None) -> None:
        """Raise NonFiniteError naming the first step since the last check whose loss or
        gradient norm was NaN/Inf. ``weights``: also check the parameters (before a checkpoint:
        a bad gradient on an unmeasured step shows only there until the next loss), found at
        optimizer step ``step``."""
        self.watch.raise_if_nonfinite()
        if weights:
            finite = [torch.isfinite(p.detach()).all() for p in self.params]
            if finite and not bool(torch.stack(finite).all()):  # one sync, once per save
                at = "" if step is None else f" by optimizer step {step}"
                raise NonFiniteError(
                    f"The model's weights became NaN/Inf{at} (a non-finite gradient on a step "
                    "whose loss was still finite); the last good checkpoint is kept. Lower the "
                    "learning rate or enable trainer.grad_clip (trainer.detect_anomaly=true "
                    "finds the op)."
                )

    def _forward_backward(self, micro_batches: Sequence[Batch], step: int) -> Forward:
        n = len(micro_batches)
        if n == 1:  # no accumulation: nothing to average, no gradient sync to hold back
            return self._micro_batch(micro_batches[0], step == 0, 1)
        losses, outputs, count = [], (), 0
        for i, batch in enumerate(micro_batches):
            with self._sync_context(last=i == n - 1):
                loss, kept, size = self._micro_batch(batch, step == 0 and i == 0, n)
            losses.append(loss)
            outputs += kept
            count += size
        return torch.stack(losses).mean(), outputs, count

    def _micro_batch(self, batch: Batch, first: bool, n: int) -> Forward:
        """Forward and backward of one micro-batch of ``n`` -> (detached loss, its (detached
        outputs, labels) for the task's training metric, or (), samples). ``first``: the run's
        first micro-batch (its loss is checked against what a fresh model starts at)."""
        inputs = batch.inputs if self.prepare is None else self.prepare(batch.inputs)
        if self.fp32:
            logits, loss = self._forward(inputs, batch.targets)
        else:
            with self.autocast():  # the forward only: backward runs outside autocast
                logits, loss = self._forward(inputs, batch.targets)
        if first and not self.first_step_checked:
            self._check_initial_loss(loss.item(), logits.shape[-1])
        # mean over micro-batches: N micro-batches of B equal one batch of N*B
        scaled = loss / n if n > 1 else loss
        (self.scaler.scale(scaled) if self.scaled else scaled).backward()
        if not self.first_step_checked:
            self.first_step_checked = True
            report_unused(self.model)
        if not self.keep_outputs:
            return loss.detach(), (), len(batch.labels)
        return loss.detach(), ((logits.detach(), batch.labels),), batch.labels.numel()

    def _check_initial_loss(self, loss: float, outputs: int) -> None:
        """The first loss against what the task's loss should start at (quiet after pretrained
        weights: they start wherever they were trained to)."""
        if self.objective.pretrained:
            log.info("initial loss %.3f (pretrained weights: no fresh-model check)", loss)
            return
        task = self.objective.task
        if task is None:  # built without a task (scripts): softmax classification
            expected = (math.log(outputs), f"ln({outputs}) for a fresh {outputs}-class softmax")
        else:
            expected = task.initial_loss(self.objective.loss_name)
        if expected is not None:
            check_initial_loss(loss, *expected)

    def _forward(self, inputs, targets: torch.Tensor):
        if isinstance(inputs, torch.Tensor):
            logits = self.train_model(inputs)  # [B, K]
        else:
            logits = call_model(self.train_model, inputs)
        # fp32 logits go as they are (``.float()`` would still dispatch an op every step)
        return logits, self.loss_fn(
            logits if logits.dtype == torch.float32 else logits.float(), targets
        )

    def _unscale_and_clip(self, measure: bool) -> torch.Tensor | None:
        """The total gradient norm before clipping (true scale: fp16 gradients are unscaled),
        or None when neither ``measure`` nor clipping by norm needs it."""
        s = self.settings
        if self.scaled:
            self.scaler.unscale_(self.optimizer)
        if self.clip_norm:
            return torch.nn.utils.clip_grad_norm_(self.params, s.grad_clip)
        norm = None
        if measure:
            norm = torch.nn.utils.get_total_norm(
                [p.grad for p in self.params if p.grad is not None]
            )
        if s.grad_clip is not None:
            torch.nn.utils.clip_grad_value_(self.params, s.grad_clip)
        return norm

    def _skip_nonfinite(self) -> bool:
        """skip_nonfinite mode: judge this step now (one device sync). True: skip it; raises once
        more bad steps come than trainer.skip_nonfinite allows."""
        bad = self.watch.first_bad()
        if bad is None:
            return False
        step, what = bad
        if self.nonfinite_skipped < self.settings.skip_nonfinite:
            self.nonfinite_skipped += 1
            log.warning(
                "Non-finite %s at step %d: step skipped (%d of trainer.skip_nonfinite=%d).",
                what,
                step,
                self.nonfinite_skipped,
                self.settings.skip_nonfinite,
            )
            return True
        raise nonfinite_error(step, what)
