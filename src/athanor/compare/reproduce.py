"""How a re-run compares with its original, metric by metric: every train log step (TensorBoard
scalars) and every evaluation (metrics.jsonl) at a step both runs have, up to ``--steps``.

"identical" means bitwise: every common point equal (NaN equals NaN). Otherwise each metric that
differs gets its largest absolute difference and the first step where the curves part; the
verdict fails when a difference is beyond ``atol`` (0 for a CPU or deterministic run, where the
re-run is expected to be bitwise equal; GPU_ATOL for a GPU run without trainer.deterministic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from athanor.compare.runs import (
    Run,
    environment_differences,
    fingerprint_differences,
    read_fingerprint,
)

# the default tolerance for a GPU run without trainer.deterministic: its kernels (atomics in
# cuDNN / scatter ops) sum in varying order, so losses drift in the last digits and grow
GPU_ATOL = 1.0e-2


def default_atol(run: Run) -> float:
    """0 where the original was bitwise reproducible (CPU, or trainer.deterministic), else
    GPU_ATOL."""
    device = (run.rerun.get("device") or {}).get("type", "cpu")
    deterministic = (run.rerun.get("determinism") or {}).get("deterministic", False)
    return 0.0 if device == "cpu" or deterministic else GPU_ATOL


@dataclass(frozen=True)
class MetricDiff:
    name: str
    points: int  # steps both runs have
    largest: float  # largest |a - b| (inf where one is NaN and the other not)
    parts_at: int | None  # first step where the values differ; None: identical
    missing: int  # steps of the original (up to the limit) the re-run lacks

    @property
    def identical(self) -> bool:
        return self.parts_at is None and self.missing == 0


def _differ(a: float, b: float) -> float:
    if math.isnan(a) and math.isnan(b):
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    return abs(a - b) if a != b else 0.0


def compare_metric(
    name: str, original: dict[int, float], rerun: dict[int, float], steps: int | None
) -> MetricDiff:
    wanted = {s for s in original if steps is None or s <= steps}
    common = sorted(wanted & rerun.keys())
    diffs = [(s, _differ(original[s], rerun[s])) for s in common]
    parted = [s for s, d in diffs if d > 0]
    largest = max((d for _, d in diffs), default=0.0)
    # a re-run cut by --steps validates once at its last step: that point has no original twin
    missing = len(wanted - rerun.keys())
    return MetricDiff(name, len(common), largest, parted[0] if parted else None, missing)


def compare_runs(original: Run, rerun: Run, steps: int | None) -> list[MetricDiff]:
    """One MetricDiff per metric the original logged (train log steps and evaluations)."""
    a, b = original.curves(), rerun.curves()
    return [compare_metric(name, a[name], b.get(name, {}), steps) for name in sorted(a)]


def verdict(diffs: list[MetricDiff], atol: float) -> tuple[bool, str]:
    """(within tolerance, the text that says how the re-run compares)."""
    compared = [d for d in diffs if d.points]
    if not compared:
        return False, (
            "nothing to compare: the runs share no logged step (train/* are logged every "
            "trainer.log_every steps, evaluations at epoch ends): give a larger --steps"
        )
    points = sum(d.points for d in compared)
    if all(d.identical for d in diffs if d.points or d.missing):
        return True, f"identical: {len(compared)} metrics, {points} points, bitwise equal"
    lines = [f"{'metric':<24} {'points':>6} {'largest diff':>13}  parts at step"]
    for d in diffs:
        if d.identical:
            continue
        parts = "-" if d.parts_at is None else str(d.parts_at)
        missing = f" ({d.missing} steps missing)" if d.missing else ""
        lines.append(f"{d.name:<24} {d.points:>6} {d.largest:>13.3g}  {parts}{missing}")
    same = [d.name for d in diffs if d.identical]
    if same:
        lines.append(f"identical: {', '.join(same)}")
    ok = all(d.largest <= atol and not d.missing for d in diffs)
    beyond = "within" if ok else "beyond"
    lines.append(f"{beyond} the tolerance atol={atol:g}")
    return ok, "\n".join(lines)


def as_data(diffs: list[MetricDiff]) -> dict[str, Any]:
    """The comparison as plain data (for --json and the re-run folder's reproduce.json)."""
    return {
        d.name: {
            "points": d.points,
            "largest_diff": d.largest,
            "parts_at": d.parts_at,
            "missing": d.missing,
        }
        for d in diffs
    }


def current_environment(run: Run) -> dict[str, Any]:
    """This machine's environment in summary.json's shape, for environment_differences: the
    code, packages and uncommitted changes now, the device the re-run will get, and the
    fingerprint of the files the run's data config names (the splits are known once built)."""
    import torch

    from athanor.record import environment, fingerprint

    patch = environment.uncommitted_patch(environment.code_folder())
    device = dict(run.rerun.get("device") or {})
    if device.get("type") == "cuda" and not torch.cuda.is_available():
        device = {**device, "type": "cpu", "name": "no GPU here"}
    paths = fingerprint.named_paths(run.config.get("data") or {})
    data = {
        key: fingerprint.folder_fingerprint(p) if p.is_dir() else fingerprint.file_fingerprint(p)
        for key, p in paths.items()
    }
    return {
        "git": environment.git_info(environment.code_folder()),
        "versions": environment.package_versions(),
        "rerun": {"patch": patch[1] if patch else None, "device": device},
        "data_paths": data,
    }


def environment_warnings(run: Run) -> list[str]:
    """What differs between the run's environment and this one, before the re-run starts."""
    now = current_environment(run)
    saved = {**run.summary, "rerun": {**run.rerun, "data_fingerprint": None}}
    rows = environment_differences(
        saved, {**now, "rerun": {**now["rerun"], "data_fingerprint": None}}
    )
    lines = [f"{what}: {was} then, {is_} now" for what, was, is_ in rows]
    saved_paths = read_fingerprint(run).get("paths") or {}
    for entry in fingerprint_differences(saved_paths, now["data_paths"]):
        lines.append(f"data fingerprint: data.{entry} differs from the run's")
    return lines


def rerun_warnings(original: Run, rerun: Run) -> list[str]:
    """What the re-run measured differently: its device (threads, world size) and the data
    fingerprint's entries (files and built splits)."""
    device = [
        f"{what}: {was} then, {is_} in the re-run"
        for what, was, is_ in environment_differences(original.summary, rerun.summary)
        if what.startswith("device")
    ]
    return device + [
        f"data fingerprint: {entry} differs from the run's"
        for entry in fingerprint_differences(read_fingerprint(original), read_fingerprint(rerun))
    ]
