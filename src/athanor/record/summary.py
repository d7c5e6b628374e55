"""summary.json's one schema: every field a run's summary holds, its type and what it means.

``RunRecord`` (record/record.py) is the only writer; it fills a ``Summary`` and writes it whole.
A field is added here and nowhere else: the reference's table of fields
(``athanor help --write-reference``) is generated from this module, and a test compares them.
``format_version`` grows when a field changes meaning or is removed (readers of an older
summary meet the older fields); adding a field keeps the version.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

# 2: `format_version` and `segments`; wall_time_s sums the segments (1 counted the last only)
FORMAT_VERSION = 2


def _doc(text: str, default: Any = None, factory: Any = None) -> Any:
    """A field with its meaning, read by the reference's table."""
    if factory is not None:
        return field(default_factory=factory, metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass
class Segment:
    """One process's share of the run: the first start, then one per resume."""

    started: str = _doc("local time the process started (ISO 8601)", "")
    ended: str | None = _doc("local time it wrote its outcome; null while it runs or if killed")
    seconds: float = _doc("its wall-clock seconds (0 for a process killed without a word)", 0.0)
    start_step: int = _doc("the optimizer step it started at (0, or the checkpoint's)", 0)
    end_step: int | None = _doc("the optimizer step it ended at")


@dataclass
class Summary:
    """summary.json. Numbers that are NaN/Inf are written as null and named in ``nonfinite``."""

    format_version: int = _doc("version of this schema", FORMAT_VERSION)
    status: str = _doc("running | completed | failed | interrupted | pruned", "running")
    started: str = _doc("local time the run first started (ISO 8601)", "")
    error: str | None = _doc("why the run did not complete (null when it did)")
    wall_time_s: float = _doc("seconds over all segments (every start and resume)", 0.0)
    segments: list[Segment] = _doc("each process's start, end, seconds and steps", factory=list)
    resumes: list[dict[str, Any]] = _doc(
        "each resume: time, checkpoint, epoch, step, changes (the config keys that changed)",
        factory=list,
    )
    monitor: str | None = _doc("the metric deciding best (checkpoint.monitor)")
    mode: str | None = _doc("min | max: which way `monitor` improves")
    best: dict[str, Any] = _doc("the evaluation record where `monitor` was best", factory=dict)
    final: dict[str, Any] = _doc("the last evaluation record", factory=dict)
    epochs: int | None = _doc("epochs done")
    steps: int | None = _doc("optimizer steps done")
    stop_reason: str | None = _doc(
        "why training stopped: epochs, max_steps, max_time, early_stopping, ... or the status"
    )
    params: dict[str, Any] = _doc("parameter counts: total, trainable", factory=dict)
    model: dict[str, Any] = _doc(
        "parameters, size_mb, flops_per_sample and each top-level layer", factory=dict
    )
    checkpoint_bytes: int | None = _doc("bytes of the checkpoint folder at the end")
    skipped_files: list[str] = _doc("data files left out by data.on_bad_file=skip", factory=list)
    git: dict[str, Any] = _doc("commit and dirty flag of athanor's checkout", factory=dict)
    versions: dict[str, str] = _doc("python, athanor, torch, ... versions", factory=dict)
    command: str = _doc("the command line", "")
    host: str = _doc("the machine's name", "")
    devices: str | None = _doc("CUDA_VISIBLE_DEVICES of this job (null: all)")
    argv: list[str] = _doc("the command's arguments, as a re-run replays them", factory=list)
    cwd: str = _doc("the folder the command ran in", "")
    slurm: dict[str, Any] | None = _doc(
        "the SLURM job: job_id, raw_job_id, array_index, restart_count, node (null outside SLURM)"
    )
    compiled: dict[str, Any] | None = _doc(
        "trainer.compile=regional: the blocks compiled and compile_s, the seconds it cost"
    )
    never_started: bool = _doc(
        "the run failed while being built: its folder holds no run to continue", False
    )
    rerun: dict[str, Any] = _doc(
        "what a re-run needs: device, determinism, and the files beside (config, patch, "
        "data fingerprint)",
        factory=dict,
    )

    @property
    def segment(self) -> Segment:
        """The segment of this process (the last one)."""
        return self.segments[-1]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        """A summary read back, of this version or an older one (a version-1 summary's time
        becomes one segment). Keys of no field (``nonfinite``, written beside) are dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        summary = cls(**{k: v for k, v in data.items() if k in known})
        summary.segments = [Segment(**s) for s in data.get("segments") or []]
        if data.get("format_version") is None and data.get("wall_time_s"):
            summary.segments = [
                Segment(started=summary.started, seconds=data["wall_time_s"], end_step=None)
            ]
        summary.format_version = FORMAT_VERSION
        return summary


def fields_table() -> str:
    """The reference's table of summary.json's fields, generated from the schema."""
    hints = typing.get_type_hints(Summary)
    rows = ["| field | type | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(Summary):
        kind = _type_name(hints[f.name])
        rows.append(f"| `{f.name}` | {kind} | {_cell(f.metadata['doc'])} |")
    each = "; ".join(f"`{f.name}`: {f.metadata['doc']}" for f in dataclasses.fields(Segment))
    rows.append(f"| `segments[]` | Segment | {_cell(each)} |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _type_name(hint: Any) -> str:
    """``str | None`` as `str or null` (a bare ``|`` would split the Markdown cell)."""
    if isinstance(hint, type):
        return hint.__name__
    text = str(hint).replace("typing.", "").replace("athanor.record.summary.", "")
    return text.replace(" | None", " or null").replace(" | ", " or ")
