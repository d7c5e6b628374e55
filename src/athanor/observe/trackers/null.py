"""The do-nothing tracker as a registered name: ``logger.trackers=[none]`` (or ``[]``)."""

from __future__ import annotations

from athanor.observe.trackers.base import TRACKERS, NullTracker, TrackerContext


@TRACKERS.register("none")
def null_tracker(ctx: TrackerContext) -> NullTracker:
    """Records nothing (the run folder still holds metrics.jsonl and summary.json)."""
    return NullTracker()
