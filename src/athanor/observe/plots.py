"""Figures for the run folder and TensorBoard: loss/accuracy/lr curves and the confusion matrix.
matplotlib is imported lazily and only through its Agg canvas (no GUI backend, no pyplot state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def to_image(fig) -> torch.Tensor:
    """The rendered figure as a uint8 [3, H, W] tensor (for TensorBoard)."""
    fig.canvas.draw()
    rgba = torch.frombuffer(bytearray(fig.canvas.buffer_rgba()), dtype=torch.uint8)
    w, h = fig.canvas.get_width_height()
    return rgba.view(h, w, 4)[..., :3].permute(2, 0, 1).contiguous()


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


# "Blues"-like ramp: a row-normalized rate of 0 is white, 1 is dark blue
_WHITE = torch.tensor([255.0, 255.0, 255.0]).view(3, 1, 1)
_BLUE = torch.tensor([8.0, 48.0, 107.0]).view(3, 1, 1)


def row_rates(matrix: torch.Tensor) -> torch.Tensor:
    """Each true-class row divided by its count (rows of an empty class stay 0)."""
    counts = matrix.double().cpu()
    return counts / counts.sum(dim=1, keepdim=True).clamp(min=1)


def confusion_image(matrix: torch.Tensor, pixels: int = 256) -> torch.Tensor:
    """The row-normalized confusion matrix as a uint8 [3, H, W] heat map, drawn with tensor ops
    (no matplotlib): cheap enough for every validation, where a figure costs ~0.5 s."""
    rates = row_rates(matrix).float()
    cell = max(2, pixels // len(rates))
    big = rates.repeat_interleave(cell, 0).repeat_interleave(cell, 1)[None]  # [1, H, W]
    return (_WHITE + (_BLUE - _WHITE) * big).round().to(torch.uint8)


def confusion_figure(matrix: torch.Tensor, class_names: list[str], title: str):
    """Rows are true classes, columns predictions; each row normalized to sum to 1, raw counts
    written in the cells when the matrix is small enough to read."""
    counts = matrix.double().cpu()
    rates = row_rates(counts)
    n = len(class_names)
    side = min(4 + 0.45 * n, 16)
    fig = _figure(side, side)
    ax = fig.add_subplot()
    im = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046)
    if n <= 30:
        ax.set_xticks(range(n), class_names, rotation=90)
        ax.set_yticks(range(n), class_names)
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    color = "white" if rates[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


# the panels curves.png may hold, in order: the loss, the task's headline metric (accuracy for
# classification, mAP for multilabel, MAE for regression) and the learning rate
CURVE_PANELS = (
    ("loss", "loss"),
    ("acc", "accuracy"),
    ("map", "mean average precision"),
    ("mae", "mean absolute error"),
    ("lr", "learning rate"),
)


def _series(train: list[dict[str, Any]], val: list[dict[str, Any]], key: str) -> list:
    """[(label, steps, values)] of one panel: train, val and val_ema, those that were logged."""
    found = []
    for records, prefix in ((train, "train"), (val, "val"), (val, "val_ema")):
        tag = key if key == "lr" else f"{prefix}/{key}"
        points = [(r["step"], r[tag]) for r in records if tag in r]
        if points:
            found.append((prefix, *zip(*points, strict=True)))
    return found


def curves_figure(train: list[dict[str, Any]], val: list[dict[str, Any]]):
    """A panel over optimizer steps for each of CURVE_PANELS the run logged: no empty panel
    (a regression run has no accuracy), no legend without lines."""
    panels = [(label, s) for key, label in CURVE_PANELS if (s := _series(train, val, key))]
    fig = _figure(5 * max(len(panels), 1), 4)
    for k, (label, series) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        for prefix, xs, ys in series:
            ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=prefix)
        ax.set_xlabel("optimizer step")
        ax.set_title(label)
        if label != "learning rate":
            ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def overlay_figure(runs: dict[str, dict[str, dict[int, float]]], metrics: list[str]):
    """One panel per metric, every run's curve (value against the optimizer step) in it."""
    fig = _figure(5 * len(metrics), 3.6)
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        for label, curves in runs.items():
            points = sorted(curves.get(metric, {}).items())
            if points:
                ax.plot(
                    *zip(*points, strict=True),
                    marker="." if len(points) < 50 else None,
                    label=label,
                )
        ax.set_xlabel("step")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
