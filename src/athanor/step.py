"""One optimizer step: mixed precision, gradient accumulation, clipping, non-finite guard, EMA."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from athanor.data.loaders import Batch
from athanor.ema import Ema
from athanor.errors import NonFiniteError
from athanor.insight import check_initial_loss, report_unused
from athanor.settings import TrainerSettings

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


@dataclass
class StepResult:
    loss: torch.Tensor  # mean loss over the micro-batches (a device tensor: no sync)
    correct: torch.Tensor  # top-1 hits (device tensor)
    count: int  # samples in this step
    grad_norm: torch.Tensor  # total gradient norm before clipping
    skipped: bool = False


class Stepper:
    def __init__(
        self,
        model: nn.Module,
        train_model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler,
        loss_fn: nn.Module,
        settings: TrainerSettings,
        device: torch.device,
        ema: Ema | None = None,
        prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.model, self.train_model = model, train_model  # train_model: DDP/compiled wrapper
        self.optimizer, self.scheduler, self.loss_fn = optimizer, scheduler, loss_fn
        self.settings, self.device, self.ema = settings, device, ema
        self.prepare = prepare or (lambda x: x)  # e.g. channels_last inputs
        self.autocast = autocast_factory(settings.precision, device)
        fp16 = settings.precision == "fp16"
        self.scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        self.nonfinite_skipped = 0
        self.first_step_checked = False
        self.params = [p for p in model.parameters() if p.requires_grad]

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
    ) -> StepResult:
        """Forward/backward over the micro-batches, then one optimizer step. ``step`` counts the
        optimizer steps done before this one; ``on_grads`` sees the final (clipped) gradients."""
        try:
            with torch.autograd.set_detect_anomaly(self.settings.detect_anomaly):
                loss, correct, count = self._forward_backward(micro_batches, step)
        except RuntimeError as err:
            if not self.settings.detect_anomaly or "nan" not in str(err).lower():
                raise
            first = str(err).strip().splitlines()[0]
            raise NonFiniteError(
                f"trainer.detect_anomaly found NaN in the backward pass at optimizer step "
                f"{step + 1}: {first}"
            ) from err
        grad_norm = self._unscale_and_clip()
        if not self._finite(loss, grad_norm, step):
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
            return StepResult(loss, correct, count, grad_norm, skipped=True)
        if on_grads is not None:
            on_grads(self.model)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model, step + 1)
        return StepResult(loss, correct, count, grad_norm)

    def _forward_backward(self, micro_batches: Sequence[Batch], step: int):
        n = len(micro_batches)
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        count = 0
        for i, batch in enumerate(micro_batches):
            with self._sync_context(last=i == n - 1):
                with self.autocast():
                    logits = self.train_model(self.prepare(batch.inputs))  # [B, K]
                    loss = self.loss_fn(logits.float(), batch.targets)
                if step == 0 and i == 0 and not self.first_step_checked:
                    check_initial_loss(loss.item(), logits.shape[-1])
                # mean over micro-batches: N micro-batches of B equal one batch of N*B
                self.scaler.scale(loss / n).backward()
            total_loss += loss.detach()
            correct += (logits.detach().argmax(1) == batch.labels).sum()
            count += batch.labels.numel()
        if not self.first_step_checked:
            self.first_step_checked = True
            report_unused(self.model)
        return total_loss / n, correct, count

    def _unscale_and_clip(self) -> torch.Tensor:
        """The total gradient norm before clipping (true scale: fp16 gradients are unscaled)."""
        s = self.settings
        self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.params if p.grad is not None]
        if s.grad_clip is not None and s.grad_clip_mode == "norm":
            return torch.nn.utils.clip_grad_norm_(self.params, s.grad_clip)
        norm = torch.nn.utils.get_total_norm(grads)
        if s.grad_clip is not None:
            torch.nn.utils.clip_grad_value_(self.params, s.grad_clip)
        return norm

    def _finite(self, loss: torch.Tensor, grad_norm: torch.Tensor, step: int) -> bool:
        # fp16: inf gradients are the GradScaler's business (it skips the step, lowers the scale)
        checked = [loss] if self.scaler.is_enabled() else [loss, grad_norm]
        finite = torch.isfinite(torch.stack(checked)).tolist()  # one device sync
        if all(finite):
            return True
        what = "loss" if not finite[0] else "gradient norm"
        if self.nonfinite_skipped < self.settings.skip_nonfinite:
            self.nonfinite_skipped += 1
            log.warning(
                "Non-finite %s at step %d: step skipped (%d of trainer.skip_nonfinite=%d).",
                what,
                step + 1,
                self.nonfinite_skipped,
                self.settings.skip_nonfinite,
            )
            return False
        raise NonFiniteError(
            f"The {what} became NaN/Inf at optimizer step {step + 1}. The last good checkpoint is "
            "kept. Lower the learning rate, enable trainer.grad_clip, check the inputs, or allow "
            "a few bad steps with trainer.skip_nonfinite=N (trainer.detect_anomaly=true finds the op)."
        )

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict(), "nonfinite_skipped": self.nonfinite_skipped}

    def load_state_dict(self, state: dict) -> None:
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.nonfinite_skipped = int(state.get("nonfinite_skipped", 0))
