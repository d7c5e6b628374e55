"""What the user sees while training: a progress bar on a TTY (plain log lines otherwise),
TensorBoard scalars and ``metrics.jsonl`` records. Only the main process reports."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import torch

from athanor.distributed import sum_across_ranks
from athanor.settings import LoggerSettings
from athanor.tracking import NullTracker

log = logging.getLogger("athanor")


class Reporter:
    def __init__(
        self,
        *,
        tracker: NullTracker,
        logger: LoggerSettings,
        optimizer,
        log_every: int,
        steps_per_epoch: int,
        total_steps: int,
        epochs: int,
        append_metrics,
        active: bool = True,
    ):
        self.tracker, self.settings, self.optimizer = tracker, logger, optimizer
        self.log_every, self.steps_per_epoch = log_every, steps_per_epoch
        self.total_steps, self.epochs = total_steps, epochs
        self.append_metrics, self.active = append_metrics, active
        mode = logger.progress
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "plain"
        self.mode = mode if active else "none"
        self.bar = None
        self._window_reset()
        self.history: list[dict[str, Any]] = []

    def _window_reset(self) -> None:
        self.loss_sum: torch.Tensor | float = 0.0
        self.correct: torch.Tensor | int = 0
        self.count = 0
        self.steps = 0
        self.window_start = time.perf_counter()

    def lrs(self) -> dict[str, float]:
        groups = self.optimizer.param_groups
        out = {"lr": groups[0]["lr"]}
        if len(groups) > 1:
            for i, g in enumerate(groups):
                out[f"lr/{g.get('name', i)}"] = g["lr"]
        return out

    def epoch_start(self, p) -> None:
        if self.mode == "bar":
            from tqdm import tqdm

            done = p.batch and min(self.steps_per_epoch, p.step % max(1, self.steps_per_epoch))
            self.bar = tqdm(
                total=self.steps_per_epoch,
                initial=done or 0,
                leave=False,
                desc=f"epoch {p.epoch + 1}/{self.epochs}",
                dynamic_ncols=True,
            )

    def train_step(self, p, result) -> None:
        """Accumulate on the device; synchronize only every ``log_every`` steps."""
        self.loss_sum = self.loss_sum + result.loss.detach() * result.count
        self.correct = self.correct + result.correct
        self.count += result.count
        self.steps += 1
        if self.bar is not None:
            self.bar.update(1)
        if p.step % self.log_every and p.step != self.total_steps:
            return
        elapsed = max(time.perf_counter() - self.window_start, 1e-9)
        # every rank logs on the same steps: the window's sums over all ranks give the global mean
        loss_sum, correct, count = sum_across_ranks(
            self.loss_sum, self.correct, self.count, device=result.loss.device
        )
        scalars = {
            "train/loss": loss_sum / max(count, 1),
            "train/acc": correct / max(count, 1),
            **self.lrs(),
            "train/samples_per_s": count / elapsed,
        }
        if result.grad_norm is not None:
            scalars["train/grad_norm"] = float(result.grad_norm)
        if torch.cuda.is_available():
            scalars["train/peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
        self.tracker.scalars(scalars, p.step)
        self._show(p, scalars)
        self._window_reset()

    def _show(self, p, s: dict[str, float]) -> None:
        text = (
            f"loss {s['train/loss']:.4f} acc {s['train/acc']:.3f} lr {s['lr']:.3g} "
            f"{s['train/samples_per_s']:.0f} samples/s"
        )
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
        elif self.mode == "plain":
            log.info("epoch %d step %d/%d: %s", p.epoch + 1, p.step, self.total_steps, text)

    def validation(self, p, metrics: dict[str, float], counts) -> None:
        record = {"epoch": p.epoch, "step": p.step, "time": time.time(), **metrics}
        self.history.append(record)
        if not self.active:
            return
        self.tracker.scalars({**metrics, "epoch": p.epoch}, p.step)
        self.append_metrics(record)
        self.tracker.flush()

    def epoch_end(self, p, metrics: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if not self.active:
            return
        shown = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        log.info(
            "epoch %d/%d done (step %d)%s",
            p.epoch,
            self.epochs,
            p.step,
            f": {shown}" if shown else "",
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
