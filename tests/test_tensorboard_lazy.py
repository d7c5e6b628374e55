"""The TensorBoard tracker opens its event file lazily: nothing written before is lost."""

from __future__ import annotations

import torch

from athanor.observe.trackers import TensorBoardTracker


def test_writes_before_the_writer_opens_reach_the_event_file(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = TensorBoardTracker(tmp_path / "tb")
    tracker._pending.append(("add_image", ("grid", torch.zeros(3, 4, 4), 0)))  # as if early
    tracker.image("train/augmented_batch", torch.ones(3, 4, 4), 0)
    tracker.scalars({"train/loss": 1.5}, 10)
    tracker.finish("completed")
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert set(acc.Tags()["images"]) == {"grid", "train/augmented_batch"}
    assert [e.value for e in acc.Scalars("train/loss")] == [1.5]


def test_a_tracker_that_wrote_nothing_still_leaves_its_event_file(tmp_path):
    TensorBoardTracker(tmp_path / "tb").finish("completed")
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_start_up_writes_wait_and_the_first_log_step_opens_the_file(tmp_path):
    # the start-up image grid (step 0) is held: TensorBoard's import before the first optimizer
    # step would delay it; the first write after it opens the event file and replays the grid
    tracker = TensorBoardTracker(tmp_path / "tb")
    tracker.image("train/augmented_batch", torch.ones(3, 4, 4), 0)
    assert tracker._writer is None and len(tracker._pending) == 1
    assert not (tmp_path / "tb").exists()
    tracker.scalars({"train/loss": 1.5}, 10)  # the first log step
    assert tracker._writer is not None and tracker._pending == []
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    tracker.finish("completed")
