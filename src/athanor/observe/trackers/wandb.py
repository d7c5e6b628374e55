"""Weights & Biases: the same mapping as MLflow (config = flattened config, swept keys first;
metrics at the TensorBoard steps; summary/plots/checkpoint saved with the run), the sweep as the
W&B group, and the run id kept for a resume. ``logger.wandb.mode=offline`` needs no network:
``wandb sync <run>/wandb/offline-run-*`` uploads later.

As for MLflow, metrics are sent at each flush (before every checkpoint) and at the end.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from athanor.observe.trackers.base import TRACKERS, NullTracker, TrackerContext

EXIT_CODES = {"completed": 0, "failed": 1, "interrupted": 130}  # W&B: non-zero = failed/crashed


class WandbTracker(NullTracker):
    def __init__(self, ctx: TrackerContext):
        os.environ.setdefault("WANDB_SILENT", "true")  # athanor's log says what happens
        import wandb

        s = ctx.settings.wandb
        self.ctx, self.checkpoint = ctx, s.log_checkpoint
        folder = Path(s.dir) if s.dir else ctx.run_folder
        folder.mkdir(parents=True, exist_ok=True)
        self.run_id = ctx.saved.get("run_id") or uuid.uuid4().hex[:8]
        self.run = wandb.init(
            project=s.project,
            entity=s.entity,
            mode=s.mode,
            dir=str(folder),
            id=self.run_id,
            resume="allow",
            name=ctx.run.name,
            group=ctx.run.group[-128:] if ctx.run.group else None,  # W&B's limit
            tags=[f"swept:{k}"[:64] for k in ctx.run.swept],  # W&B's limit per tag
            notes=ctx.run.tags.get("athanor.command"),
            config=dict(ctx.run.tags),  # git commit, command line, run folder, host
            settings=wandb.Settings(init_timeout=30, console="off"),
        )
        self.pending: dict[int, dict[str, float]] = {}

    def params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.pending.setdefault(step, {}).update({k: float(v) for k, v in values.items()})

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        for step in sorted(pending):  # W&B wants rising steps
            self.run.log(pending[step], step=step)

    def artifact(self, path: Path) -> None:
        base = str(self.ctx.run_folder)
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                self.run.save(str(file), base_path=base, policy="now")

    def saved_state(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "project": self.ctx.settings.wandb.project}

    def finish(self, status: str) -> None:
        self.flush()
        if self.checkpoint != "none":
            self.artifact(self.ctx.run_folder / "checkpoints" / f"{self.checkpoint}.pt")
        self.run.summary["athanor/status"] = status
        self.run.finish(exit_code=EXIT_CODES.get(status, 1))


@TRACKERS.register("wandb")
def wandb_tracker(ctx: TrackerContext) -> WandbTracker:
    """Weights & Biases run (logger.wandb.project, .mode, .entity, .dir); pip install athanor[wandb]"""
    return WandbTracker(ctx)
