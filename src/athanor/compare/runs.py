"""A finished run as the comparisons read it from its folder: summary.json, the resolved
config.yaml (flattened), metrics.jsonl (evaluations) and the TensorBoard scalars (the train/*
log steps), and what differs between two runs' environments."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from athanor.config.flatten import flatten
from athanor.errors import ConfigError
from athanor.record.folder import RunDir, read_yaml

# scalars that measure the machine, not the training: never compared
UNCOMPARED = ("time", "epoch", "step", "nonfinite", "train/samples_per_s", "sys/", "hparam/")


def compared(name: str) -> bool:
    return not any(name == u or (u.endswith("/") and name.startswith(u)) for u in UNCOMPARED)


def numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class Run:
    """One run folder, read once."""

    path: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    evaluations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rerun(self) -> dict[str, Any]:
        return self.summary.get("rerun") or {}

    @property
    def monitor(self) -> str | None:
        return self.summary.get("monitor")

    def curves(self) -> dict[str, dict[int, float]]:
        """Every compared metric as {step: value}: the evaluations' (val/*) and the train log
        steps' (train/*, lr) from the TensorBoard events."""
        curves: dict[str, dict[int, float]] = {}
        for record in self.evaluations:
            for name, value in record.items():
                if compared(name) and (numeric(value) or value is None):
                    curves.setdefault(name, {})[record["step"]] = _number(value)
        for name, points in train_scalars(RunDir(self.path).tensorboard).items():
            if compared(name) and name not in curves:
                curves[name] = points
        return curves


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)  # strict JSON wrote NaN/Inf as null


def train_scalars(folder: Path) -> dict[str, dict[int, float]]:
    """The scalars of a TensorBoard folder by tag (empty without one, or without tensorboard)."""
    if not folder.is_dir():
        return {}
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return {}
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: {e.step: float(e.value) for e in events.Scalars(tag)}
        for tag in events.Tags()["scalars"]
    }


def read_run(path: str | Path) -> Run:
    """The run in ``path``; ConfigError when it is not a finished run's folder."""
    run = RunDir(Path(path))
    if not run.started():
        raise ConfigError(
            f"{path} is not a run folder (no summary.json): give a folder under outputs/, "
            "e.g. outputs/2026-12-06/10-00-00_mlp_digits, or a sweep job's folder."
        )
    config_file = run.resolved_config
    if not config_file.is_file():
        raise ConfigError(
            f"{path} has no config.yaml (the resolved config): it was written by an athanor "
            "older than `athanor reproduce`; re-run it with `train` first."
        )
    config = read_yaml(config_file)
    if not isinstance(config, dict):
        raise ConfigError(
            f"{config_file} is damaged: it holds a {type(config).__name__}, not the run's config "
            "(a mapping of groups). Restore it from a copy, or re-run the run it belongs to."
        )
    return Run(run.path, run.read_summary(), config, run.read_metrics())


def read_fingerprint(run: Run) -> dict[str, Any]:
    """The run's data fingerprint (data_fingerprint.json), or {}."""
    name = (run.rerun.get("data_fingerprint") or {}).get("file")
    try:
        return json.loads((run.path / name).read_text()) if name else {}
    except (OSError, ValueError):
        return {}


def fingerprint_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The data fingerprint's entries that differ (flattened), e.g. ``paths.path.sample_sha256``."""
    fa, fb = flatten(a), flatten(b)
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


def environment_differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(what, a's, b's) for what differs between two summaries' environments: the commit, the
    uncommitted changes, package versions, the device, world size and threads, the data."""
    ra, rb = a.get("rerun") or {}, b.get("rerun") or {}

    def patch(r: dict[str, Any]) -> Any:
        p = r.get("patch")
        return f"{p['bytes']} bytes, sha256 {p['sha256'][:12]}" if p else "none"

    rows = [
        ("git commit", (a.get("git") or {}).get("commit"), (b.get("git") or {}).get("commit")),
        ("uncommitted changes", patch(ra), patch(rb)),
        ("data fingerprint", _short(ra, "data_fingerprint"), _short(rb, "data_fingerprint")),
    ]
    va, vb = a.get("versions") or {}, b.get("versions") or {}
    rows += [(f"version {k}", va.get(k), vb.get(k)) for k in sorted(va.keys() | vb.keys())]
    da, db = ra.get("device") or {}, rb.get("device") or {}
    rows += [
        (f"device {k}", da.get(k), db.get(k)) for k in ("type", "name", "world_size", "threads")
    ]
    return [(what, x, y) for what, x, y in rows if x != y]


def _short(rerun: dict[str, Any], key: str) -> str | None:
    digest = (rerun.get(key) or {}).get("sha256")
    return digest[:12] if digest else None
