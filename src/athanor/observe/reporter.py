"""What the user sees while training: a progress bar on a TTY (plain log lines otherwise),
TensorBoard scalars, images and histograms for the trackers, and the PNG figures of the run
folder (metrics.jsonl and summary.json are the run record's, record/record.py). Only the main
process reports; the loop calls it at fixed points."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from athanor.config.settings import LoggerSettings
from athanor.distributed import sum_across_ranks
from athanor.metrics.classification import TrainAccuracy
from athanor.metrics.step import StepResult
from athanor.observe import insight, plots
from athanor.observe.trackers import Tracker

log = logging.getLogger("athanor")

OVERFIT_TARGET = 0.99  # training accuracy debug=overfit must reach


class Reporter:
    def __init__(
        self,
        *,
        tracker: Tracker,
        logger: LoggerSettings,
        optimizer,
        steps_per_epoch: int,
        total_steps: int,
        epochs: int,
        device: torch.device,
        class_names: list[str],
        plots_dir: Path | None = None,
        active: bool = True,
        train_metric: TrainAccuracy | None = None,
    ):
        """``train_metric``: what the task counts from the steps' outputs (tasks/base.py
        ``Task.train_metric``), or None."""
        self.train_metric = train_metric
        self.tracker, self.settings, self.optimizer = tracker, logger, optimizer
        self.device, self.class_names, self.plots_dir = device, class_names, plots_dir
        self.steps_per_epoch = steps_per_epoch
        self.total_steps, self.epochs = total_steps, epochs
        self.active = active
        # whether grad_observer() can return a callback: the loop skips the call otherwise
        self.observes_grads = active and bool(logger.grad_stats_every or logger.histograms_every)
        mode = logger.progress
        if mode == "auto":  # CI logs and redirected output want lines, not a redrawn bar
            mode = "bar" if sys.stderr.isatty() and not os.environ.get("CI") else "plain"
        self.mode = mode if active else "none"
        self.bar = None
        self._window_reset()
        self.last_confusion: tuple[torch.Tensor, str] | None = None  # drawn once, by finish()
        self.train_history: list[dict[str, float]] = []  # one record per logged window

    def _window_reset(self) -> None:
        # the steps' results (device tensors), summed once per window: no ops (and no sync) on
        # the other steps
        self.window: list[StepResult] = []
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

    def on_step(self, p, result: StepResult, log_step: bool) -> None:
        """The step's observer (engine/loop.py): keep its device tensors; sum and synchronize
        only at the end of a logging window (``log_step``)."""
        if not result.skipped:  # a skipped NaN step must not turn the window's mean into NaN
            self.window.append(result)  # its loss is detached already
            if self.train_metric is not None:
                for outputs, targets in result.outputs:
                    self.train_metric.add(outputs, targets)
        self.steps += 1
        if self.bar is not None:
            self.bar.update(1)
        if not log_step:
            return
        device = result.loss.device
        loss_sum, counts = 0.0, [r.count for r in self.window]
        if self.window:
            loss_sum = self._loss_sum(counts)
        metric = self.train_metric
        hits = metric.total() if metric is not None else 0
        # every rank logs on the same steps: the window's sums over all ranks give the global mean
        loss_sum, hits, count = sum_across_ranks(loss_sum, hits, sum(counts), device=device)
        # after the sums reached the host (a device sync): the window's steps have all run, so
        # an asynchronous GPU's queued work is inside the time, not after it
        elapsed = max(time.perf_counter() - self.window_start, 1e-9)
        scalars = {
            "train/loss": loss_sum / max(count, 1),
            **({metric.name: hits / max(count, 1)} if metric is not None else {}),
            **self._loss_terms(),
            **self.lrs(),
            **({} if result.grad_norm is None else {"train/grad_norm": float(result.grad_norm)}),
            "train/samples_per_s": count / elapsed,
            **insight.peak_memory(self.device),
        }
        self.tracker.scalars(scalars, p.step)
        self.train_history.append({"step": p.step, **scalars})
        self._show(p, scalars)
        self._window_reset()

    def _loss_sum(self, counts: list[int]) -> torch.Tensor:
        """The window's loss summed over its samples (each step's loss is a mean over its own)."""
        losses = torch.stack([r.loss for r in self.window]).float()
        if len(set(counts)) == 1:  # equal batches (the usual case): one op less, no host copy
            return losses.sum() * counts[0]
        return (losses * torch.tensor(counts, dtype=losses.dtype, device=losses.device)).sum()

    def grad_observer(self, step: int) -> Callable[[nn.Module], None] | None:
        """A callback for the gradients of optimizer step ``step`` (1-based), or None when
        neither per-layer ratios nor histograms are due."""
        ratios, hists = self.settings.grad_stats_every, self.settings.histograms_every
        if not (ratios or hists):  # the default: nothing to observe, on every step
            return None
        want_ratios = self.active and ratios and step % ratios == 0
        want_hists = self.active and hists and step % hists == 0
        if not (want_ratios or want_hists):
            return None

        def observe(model: nn.Module) -> None:
            if want_ratios:
                self.tracker.scalars(insight.grad_ratios(model), step)
            if want_hists:
                insight.histograms(self.tracker, model, step)

        return observe

    def image_grid(self, inputs: torch.Tensor) -> None:
        """The first augmented training batch, as the model sees it (after normalization). The
        loop hands over the batch of its first step: a peek at the loader before the loop (as
        this once was) read ahead batches that the loop's own iterator then read again, and
        restarted the workers' epoch (~0.3 s of start-up on a busy 2-core machine)."""
        images = isinstance(inputs, torch.Tensor) and inputs.dim() == 4  # not tuple/dict inputs
        tensorboard = "tensorboard" in self.settings.active_trackers  # the grid's one reader
        if self.active and self.settings.image_grid and tensorboard and images:
            self.tracker.image("train/augmented_batch", insight.image_grid(inputs), 0)

    def _loss_terms(self) -> dict[str, float]:
        """loss=terms: each term's mean over the window's steps of every rank (one collective,
        like train/loss: each rank logs on the same steps), as train/loss/<term>."""
        steps = [r.terms for r in self.window if r.terms]
        if not steps:
            return {}
        names = list(steps[0])
        sums = [torch.stack([t[name] for t in steps]).double().sum() for name in names]
        *totals, count = sum_across_ranks(*sums, float(len(steps)), device=sums[0].device)
        return {f"train/loss/{name}": v / count for name, v in zip(names, totals, strict=True)}

    def _show(self, p, s: dict[str, float]) -> None:
        text = (
            f"loss {s['train/loss']:.4f}"
            + _terms_text(s)
            + (f" acc {s['train/acc']:.3f}" if "train/acc" in s else "")
            + f" lr {s['lr']:.3g} "
            f"{s['train/samples_per_s']:.0f} samples/s"
        )
        if self.bar is not None:
            self.bar.set_postfix_str(text)  # once per log_every steps: cheap
        elif self.mode == "plain":
            log.info("epoch %d step %d/%d: %s", p.epoch + 1, p.step, self.total_steps, text)

    def validation(self, p, metrics: dict[str, float], counts) -> dict[str, float]:
        """Show one validation; returns its per-class accuracy by class name."""
        accuracy = counts.per_class_accuracy()  # None: the task has no classes
        per_class = {} if accuracy is None else dict(zip(self.class_names, accuracy, strict=True))
        if not self.active:
            return per_class
        self.tracker.scalars({**metrics, "epoch": p.epoch}, p.step)
        if len(per_class) <= 32:  # beyond that, per-class curves drown the scalar dashboard
            self.tracker.scalars({f"val_class/{k}": v for k, v in per_class.items()}, p.step)
        if self.settings.plots and counts.confusion is not None:
            # a tensor heat map every validation; the annotated figure once, at the end
            self.tracker.image(
                "val/confusion_matrix", plots.confusion_image(counts.confusion), p.step
            )
            title = f"validation, step {p.step}: acc {metrics.get('val/acc', 0):.4f}"
            self.last_confusion = (counts.confusion.cpu(), title)
        # no flush here: the run flushes before each checkpoint, so remote trackers never hold
        # steps a resume would send again
        return per_class

    def epoch_end(self, p, metrics: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if not self.active:
            return
        shown = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        if p.batch:  # stopped inside an epoch (a signal, a time limit): it is not done
            log.info(
                "epoch %d/%d stopped at step %d (%s)%s",
                p.epoch + 1,
                self.epochs,
                p.step,
                p.stop_reason,
                f": {shown}" if shown else "",
            )
            return
        log.info(
            "epoch %d/%d done (step %d)%s",
            p.epoch,
            self.epochs,
            p.step,
            f": {shown}" if shown else "",
        )

    def finish(self, hparams: dict[str, Any], history: list[dict[str, Any]]) -> None:
        """End of the run: curves as PNG, and the HPARAMS entry (flattened config + final
        metrics) so sweeps compare side by side in TensorBoard. ``history``: the run's
        evaluation records (metrics.jsonl)."""
        if not self.active:
            return
        if self.settings.plots and self.plots_dir is not None and self.train_history:
            plots.save(
                plots.curves_figure(self.train_history, history), self.plots_dir / "curves.png"
            )
        if self.settings.plots and self.plots_dir is not None and self.last_confusion:
            matrix, title = self.last_confusion
            figure = plots.confusion_figure(matrix, self.class_names, title)
            plots.save(figure, self.plots_dir / "confusion_val.png")
        last = history[-1] if history else {}
        final = {k: v for k, v in last.items() if "/" in k and isinstance(v, int | float)}
        if final:
            self.tracker.hparams(hparams, final)

    def overfit_verdict(self) -> None:
        """debug=overfit: a healthy model and loss memorize a few fixed batches."""
        acc = self.train_history[-1].get("train/acc", 0.0) if self.train_history else 0.0
        if acc >= OVERFIT_TARGET:
            log.info("overfit check: reached %.1f%% training accuracy: ok", 100 * acc)
        else:
            log.warning(
                "overfit check: only %.1f%% training accuracy on a few fixed batches (expected "
                "~100%%): check the labels, the loss, the learning rate and that the model can "
                "learn at all.",
                100 * acc,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _terms_text(scalars: dict[str, float]) -> str:
    """ " (cross_entropy 1.80, focal 0.79)": loss=terms' terms beside the summed loss."""
    terms = [(k.removeprefix("train/loss/"), v) for k, v in scalars.items() if "/loss/" in k]
    return " (" + ", ".join(f"{name} {v:.4f}" for name, v in terms) + ")" if terms else ""
