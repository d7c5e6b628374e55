"""MLflow: params = the flattened config (swept keys first), metrics at the TensorBoard steps,
summary/plots/checkpoint as artifacts, the run's status, and the run id kept for a resume.

Metrics are queued and sent when the run flushes (before every checkpoint) and at the end, so
what MLflow holds never runs ahead of the last checkpoint: a resumed run re-sends nothing twice.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from athanor.observe.trackers.base import FINAL_STATUS, TRACKERS, NullTracker, TrackerContext

BATCH = 100  # MLflow accepts at most 100 params and 1000 metrics per log_batch call
MAX_VALUE = 6000  # characters of a param value MLflow stores


def mlflow_key(name: str) -> str:
    """MLflow refuses names outside [alphanumerics _ - . space /] (a class called "a(b)")."""
    return re.sub(r"[^\w\-. /]", "_", name)


def local_store() -> Path:
    """The default store: ./mlruns beside outputs/ (the working folder), used with no server."""
    return Path.cwd() / "mlruns"


def default_uri() -> str:
    # sqlite: MLflow 3 refuses new runs in a plain-folder store
    return f"sqlite:///{local_store() / 'mlflow.db'}"


class MlflowTracker(NullTracker):
    def __init__(self, ctx: TrackerContext):
        # an unreachable server must cost seconds, not MLflow's minutes of retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient

        s = ctx.settings.mlflow
        self.ctx, self.checkpoint = ctx, s.log_checkpoint
        self.uri = ctx.saved.get("tracking_uri") or s.tracking_uri or default_uri()
        if self.uri == default_uri():
            local_store().mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.pending: list[Any] = []
        self.run_id = ctx.saved.get("run_id")
        if self.run_id:  # a resume: the same run, running again
            self.client.update_run(self.run_id, status="RUNNING")
            return
        found = self.client.get_experiment_by_name(s.experiment)
        experiment = found.experiment_id if found else self._create(s.experiment)
        tags = dict(ctx.run.tags)
        if ctx.run.group:
            tags["athanor.sweep"] = ctx.run.group  # filter a sweep: tags."athanor.sweep" = '…'
            tags["athanor.swept"] = ",".join(ctx.run.swept)
        run = self.client.create_run(experiment, run_name=ctx.run.name, tags=tags)
        self.run_id = run.info.run_id

    def _create(self, name: str) -> str:
        """A new experiment; in the local store its artifacts sit beside the database."""
        where = (local_store() / "artifacts").as_uri() if self.uri == default_uri() else None
        return self.client.create_experiment(name, artifact_location=where)

    def params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(mlflow_key(k), str(v)[:MAX_VALUE]) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + BATCH], synchronous=True)

    def scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending.extend(Metric(mlflow_key(k), float(v), now, step) for k, v in values.items())

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for i in range(0, len(pending), 10 * BATCH):
            self.client.log_batch(self.run_id, metrics=pending[i : i + 10 * BATCH])

    def artifact(self, path: Path) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path))

    def saved_state(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "tracking_uri": self.uri}

    def finish(self, status: str) -> None:
        self.flush()
        if self.checkpoint != "none":
            ckpt = self.ctx.run_folder / "checkpoints" / f"{self.checkpoint}.pt"
            if ckpt.is_file():
                self.client.log_artifact(self.run_id, str(ckpt), artifact_path="checkpoints")
        self.client.set_terminated(self.run_id, status=FINAL_STATUS.get(status, "FAILED"))


@TRACKERS.register("mlflow")
def mlflow_tracker(ctx: TrackerContext) -> MlflowTracker:
    """MLflow run (logger.mlflow.tracking_uri, .experiment, .log_checkpoint); pip install athanor[mlflow]"""
    return MlflowTracker(ctx)
