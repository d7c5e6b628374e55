"""The run folder's anatomy and the metadata that lets a run reproduce itself.

<run>/.hydra/            Hydra's composed config, hydra config, overrides
<run>/train.log          the log (Hydra's file handler)
<run>/tb/                TensorBoard events
<run>/checkpoints/       last.pt, best.pt, periodic step_*.pt
<run>/metrics.jsonl      one JSON object per evaluation
<run>/summary.json       status, best/final metrics, timing, model size, provenance
<run>/trackers.json      MLflow / W&B run ids (a resume reopens them), the sweep's keys
<run>/wandb/             W&B's files (logger.trackers with wandb)
<run>/config.yaml        the resolved config as plain data
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temp file + rename so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be shared
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tb"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    def read_summary(self) -> dict[str, Any]:
        try:
            return json.loads(self.summary.read_text())
        except (OSError, ValueError):
            return {}

    def update_summary(self, **fields: Any) -> dict[str, Any]:
        summary = self.read_summary()
        summary.update(fields)
        write_json_atomic(self.summary, summary)
        return summary

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics.open("a") as f:
            f.write(json.dumps(record, default=float) + "\n")
            f.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of metrics.jsonl; a line torn by a killed process is skipped."""
        if not self.metrics.exists():
            return []
        records = []
        for line in self.metrics.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def truncate_metrics(self, after_step: int) -> None:
        """On resume: drop records newer than the checkpoint (they will be produced again)."""
        if not self.metrics.exists():
            return
        keep = [r for r in self.read_metrics() if r.get("step", 0) <= after_step]
        tmp = self.metrics.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r, default=float) + "\n" for r in keep))
        os.replace(tmp, self.metrics)
