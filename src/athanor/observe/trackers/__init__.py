"""Experiment trackers: one interface (base.py), TensorBoard, MLflow, W&B and the null tracker
behind it, registered by name in TRACKERS; ``open_trackers`` fans a run out to all of
``logger.trackers``."""

from athanor.observe.trackers.base import TRACKERS, NullTracker, RunInfo, Tracker, TrackerContext
from athanor.observe.trackers.fanout import FanOut, check_trackers, open_trackers
from athanor.observe.trackers.tensorboard import TensorBoardTracker

__all__ = [
    "TRACKERS",
    "FanOut",
    "NullTracker",
    "RunInfo",
    "TensorBoardTracker",
    "Tracker",
    "TrackerContext",
    "check_trackers",
    "open_trackers",
]
