"""The run folder's anatomy: every path of a run folder is named here, and only here.

<run>/.hydra/            Hydra's composed config (config.yaml), hydra.yaml, overrides.yaml
<run>/.hydra/resume-*/   the same, for each resume of the run
<run>/train.log          the log (Hydra's file handler)
<run>/tb/                TensorBoard events
<run>/checkpoints/       last.pt, best.pt, periodic step_*.pt (record/checkpoints.py)
<run>/trackers.json      MLflow / W&B run ids (a resume reopens them), the sweep's keys
<run>/wandb/             W&B's files (logger.trackers with wandb)
<run>/plots/             curves.png, confusion_val.png (at the end of the run)
<run>/metrics.jsonl      one JSON object per evaluation      } written by record/record.py's
<run>/summary.json       status, best/final, timing, model,   } RunRecord, and nobody else
                         provenance, resumes
Every JSON file is strict JSON: NaN/Inf are written as null and named in ``nonfinite``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def strict(value: Any, where: str = "", bad: list[str] | None = None) -> Any:
    """``value`` with NaN/Inf replaced by None; their paths are appended to ``bad``."""
    if isinstance(value, float) and not math.isfinite(value):
        if bad is not None:
            bad.append(f"{where}={value}")
        return None
    if isinstance(value, dict):
        return {k: strict(v, f"{where}.{k}" if where else str(k), bad) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v, f"{where}[{i}]", bad) for i, v in enumerate(value)]
    return value


def strict_record(record: dict[str, Any]) -> dict[str, Any]:
    """One JSON object with non-finite numbers as null and a ``nonfinite`` list naming them."""
    bad: list[str] = []
    clean = strict(record, bad=bad)
    return {**clean, "nonfinite": bad} if bad else clean


def write_json_atomic(path: Path, data: Any) -> None:
    """Write strict JSON through a temp file + rename so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be shared
    with os.fdopen(fd, "w") as f:
        json.dump(strict_record(data) if isinstance(data, dict) else data, f, indent=2, default=str)
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
    def plots(self) -> Path:
        return self.path / "plots"

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

    def started(self) -> bool:
        """Whether a run started here (it has a record); a folder without one holds no run."""
        return self.summary.is_file()

    def discard_unstarted(self) -> bool:
        """Remove what Hydra wrote for a run that failed before it started (``.hydra/``,
        ``train.log``), and the folder when nothing else is in it. True when it is gone."""
        if not self.path.is_dir() or self.started():
            return False
        hydra_files = {".hydra", "train.log"}
        if any(p.name not in hydra_files for p in self.path.iterdir()):
            return False  # someone else's files: leave the folder alone
        shutil.rmtree(self.path / ".hydra", ignore_errors=True)
        (self.path / "train.log").unlink(missing_ok=True)
        if self.path.resolve() != Path.cwd().resolve():  # hydra.run.dir=. keeps the user's folder
            self.path.rmdir()
        return True

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
        tmp.write_text("".join(json.dumps(strict_record(r)) + "\n" for r in keep))
        os.replace(tmp, self.metrics)
