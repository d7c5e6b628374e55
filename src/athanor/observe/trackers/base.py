"""The tracker interface every backend implements, and the do-nothing tracker.

A tracker receives what the reporter and the run send (scalars at a step, params, files, a final
status); TensorBoard also takes images, figures, histograms and the HPARAMS entry, which the
others may ignore. The loop and the reporter only see this interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from athanor.config.settings import LoggerSettings
from athanor.registry import Registry

# the run's own status -> the word MLflow (and the report) use for how a run ended
FINAL_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


@dataclass(frozen=True)
class RunInfo:
    """What a tracker may know about the run it records (plain data, no Hydra)."""

    config: dict[str, Any]  # the resolved config, nested
    name: str = ""  # the run folder's name
    tags: dict[str, str] = field(default_factory=dict)  # git commit, command line, run folder
    swept: tuple[str, ...] = ()  # flat keys a sweep varies (first in params, alone in HPARAMS)
    group: str | None = None  # the sweep the run belongs to (MLflow tag, W&B group)


@dataclass(frozen=True)
class TrackerContext:
    """Handed to a tracker builder: its settings, the run folder, where the run starts."""

    settings: LoggerSettings
    run_folder: Path
    run: RunInfo
    resumed_step: int | None = None  # the checkpoint's step on resume, else None
    saved: dict[str, Any] = field(default_factory=dict)  # this tracker's ids from trackers.json


class NullTracker:
    """The interface, doing nothing (non-zero ranks, logger.trackers=[none], dry runs)."""

    def scalars(self, values: dict[str, float], step: int) -> None: ...

    def params(self, params: dict[str, Any]) -> None: ...

    def artifact(self, path: Path) -> None: ...

    def image(self, tag: str, image: torch.Tensor, step: int) -> None: ...

    def figure(self, tag: str, figure: Any, step: int) -> None: ...

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None: ...

    def text(self, tag: str, text: str, step: int) -> None: ...

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None: ...

    def flush(self) -> None:
        """A checkpoint is about to be written: make everything so far durable."""

    def saved_state(self) -> dict[str, Any]:
        """Ids to store in <run>/trackers.json so a resume reopens the same run."""
        return {}

    def finish(self, status: str) -> None:
        """The run ended with ``status`` (completed / failed / interrupted)."""


Tracker = NullTracker  # the interface's name where a type is wanted

# name -> builder(ctx: TrackerContext) -> Tracker; a third-party tracker registers the same way:
#   @TRACKERS.register("mine")
#   def mine(ctx): return MyTracker(ctx.run_folder)
TRACKERS: Registry[Tracker] = Registry("tracker")
