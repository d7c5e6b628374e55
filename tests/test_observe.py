"""observe/: every tracker offers the null tracker's interface, and the progress reporter logs and
writes what it should for a few steps (a tracker stub records each call)."""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path

import pytest
import torch

import athanor.observe.trackers.mlflow
import athanor.observe.trackers.null
import athanor.observe.trackers.tensorboard
import athanor.observe.trackers.wandb  # noqa: F401  (every tracker module, for tracker_classes)
from athanor.config.settings import LoggerSettings
from athanor.metrics.classification import MetricCounts, TrainAccuracy
from athanor.metrics.step import StepResult
from athanor.observe.reporter import Reporter
from athanor.observe.trackers import NullTracker, TensorBoardTracker


def public_methods(cls: type) -> dict[str, list[tuple]]:
    """Each public method's parameters as (name, kind, default): what a caller depends on
    (annotations are left out: two spellings of one type are the same interface)."""
    return {
        name: [(p.name, p.kind, p.default) for p in inspect.signature(member).parameters.values()]
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def tracker_classes() -> list[type]:
    """Every tracker class of observe/trackers/ (the ones added later too): the subclasses of
    the null tracker, which is the interface."""
    found, todo = {NullTracker}, [NullTracker]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("athanor.observe.trackers") and sub not in found:
                found.add(sub)
                todo.append(sub)
    return sorted(found, key=lambda c: c.__name__)


def test_the_tracker_classes_are_found():
    assert {NullTracker, TensorBoardTracker} <= set(tracker_classes())


@pytest.mark.parametrize("cls", [c for c in tracker_classes() if c is not NullTracker], ids=str)
def test_every_tracker_has_the_null_trackers_methods_with_its_signatures(cls):
    """The loop calls a tracker without knowing which one it has: a method missing from one of
    them, or taking other arguments, would fail only in the runs that use that tracker."""
    null, real = public_methods(NullTracker), public_methods(cls)
    assert set(real) == set(null), f"{cls.__name__}: {set(real) ^ set(null)}"
    for name, signature in null.items():
        assert real[name] == signature, f"{cls.__name__}.{name}: {real[name]} != {signature}"


def test_tensorboard_tracker_implements_every_event_method_itself():
    """Not NullTracker's do-nothing method inherited by accident: each event kind is written
    (params and artifacts are MLflow's and W&B's; the HPARAMS entry is TensorBoard's)."""
    events = ["scalars", "image", "figure", "histogram", "text", "hparams", "flush", "finish"]
    assert [n for n in events if n not in vars(TensorBoardTracker)] == []


def test_tensorboard_tracker_writes_what_it_is_given(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = TensorBoardTracker(tmp_path)
    tracker.scalars({"train/loss": 0.5, "lr": 0.1}, 3)
    tracker.image("grid", torch.zeros(3, 4, 4), 3)
    tracker.finish("completed")
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(3, 0.5)]
    assert events.Tags()["images"] == ["grid"]


class RecordingTracker(NullTracker):
    """A tracker stub: every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def scalars(self, values, step):
        self.calls.append(("scalars", dict(values), step))

    def image(self, tag, image, step):
        self.calls.append(("image", tag, step))

    def hparams(self, hparams, metrics):
        self.calls.append(("hparams", hparams, dict(metrics)))

    def flush(self):
        self.calls.append(("flush",))

    def named(self, kind: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == kind]


class P:  # the loop's Progress, as far as the reporter reads it
    def __init__(self, epoch: int, step: int, batch: int = 0):
        self.epoch, self.step, self.batch = epoch, step, batch


def step(loss: float, correct: int, count: int = 4, skipped: bool = False) -> StepResult:
    """A step of ``count`` samples whose outputs hit their label ``correct`` times."""
    labels = torch.arange(count) % 3
    hit = torch.arange(count) < correct
    logits = torch.nn.functional.one_hot(torch.where(hit, labels, (labels + 1) % 3), 3).float()
    return StepResult(torch.tensor(loss), count, None, ((logits, labels),), skipped=skipped)


def make_reporter(plots_dir: Path, active: bool = True):
    """A reporter over a two-group optimizer (3 steps) and its tracker stub."""
    model = torch.nn.Linear(2, 3)
    optimizer = torch.optim.SGD(
        [
            {"params": [model.weight], "lr": 0.1, "name": "decay"},
            {"params": [model.bias], "lr": 0.2, "name": "no_decay"},
        ]
    )
    tracker = RecordingTracker()
    rep = Reporter(
        tracker=tracker,
        logger=LoggerSettings(progress="plain"),
        optimizer=optimizer,
        steps_per_epoch=3,
        total_steps=3,
        epochs=1,
        device=torch.device("cpu"),
        class_names=["a", "b", "c"],
        plots_dir=plots_dir,
        active=active,
        train_metric=TrainAccuracy(),
    )
    return rep, tracker


@pytest.fixture
def reporter(tmp_path):
    return make_reporter(tmp_path)


def test_reporter_logs_window_means_every_log_every_steps_and_the_last_step(reporter, caplog):
    rep, tracker = reporter
    caplog.set_level(logging.INFO, logger="athanor")
    rep.on_step(P(0, 1), step(1.0, 1), False)
    assert tracker.calls == []  # nothing between log steps
    rep.on_step(P(0, 2), step(2.0, 3, count=12), True)
    rep.on_step(P(0, 3), step(float("nan"), 0, skipped=True), True)  # the last step logs too
    (first_name, first, at_2), (_, last, at_3) = tracker.named("scalars")
    assert (first_name, at_2, at_3) == ("scalars", 2, 3)
    # means weighted by samples: (1.0*4 + 2.0*12) / 16, (1 + 3) / 16
    assert first["train/loss"] == pytest.approx(1.75) and first["train/acc"] == 0.25
    assert (first["lr"], first["lr/decay"], first["lr/no_decay"]) == (0.1, 0.1, 0.2)
    assert first["train/samples_per_s"] > 0
    assert last["train/loss"] == 0.0  # a skipped NaN step does not poison the window's mean
    assert [r["step"] for r in rep.train_history] == [2, 3]
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("epoch 1 step 2/3: loss 1.7500 acc 0.250") for line in lines)


def top1_step(logits: torch.Tensor, labels: torch.Tensor) -> StepResult:
    """A one-micro-batch step as the stepper returns it: its logits, counted by the task's
    training metric."""
    return StepResult(torch.tensor(1.0), len(labels), None, ((logits, labels),))


@pytest.mark.parametrize("held_limit", [1 << 22, 7])  # 7: counted early, every step
def test_train_acc_counted_per_window_equals_the_per_step_hits(tmp_path, monkeypatch, held_limit):
    import athanor.metrics.classification as classification

    monkeypatch.setattr(classification, "HELD_LOGITS", held_limit)
    rep, tracker = make_reporter(tmp_path)
    gen = torch.Generator().manual_seed(0)
    steps = [(torch.randn(5, 3, generator=gen), torch.randint(0, 3, (5,), generator=gen))]
    steps.append((torch.randn(4, 3, generator=gen), torch.randint(0, 3, (4,), generator=gen)))
    hits = sum(int((logits.argmax(1) == labels).sum()) for logits, labels in steps)
    rep.on_step(P(0, 1), top1_step(*steps[0]), False)
    assert len(rep.train_metric.held) == (1 if held_limit > 15 else 0)  # held, or counted now
    rep.on_step(P(0, 2), top1_step(*steps[1]), True)
    ((_, logged, _),) = tracker.named("scalars")
    assert logged["train/acc"] == hits / 9  # the same integers as counting every step
    window = rep.train_metric
    assert window.held == [] and window.hits == []  # no logits kept after the log step


def test_reporter_writes_each_validation_and_the_figures_at_the_end(reporter, tmp_path):
    rep, tracker = reporter
    rep.on_step(P(0, 1), step(1.0, 1), False)
    rep.on_step(P(0, 2), step(1.0, 2), True)
    counts = MetricCounts(3, torch.device("cpu"))
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0], [0, 0, 5.0]])
    counts.update(logits, torch.tensor([0, 1, 1, 2]), torch.tensor(2.0))
    metrics = counts.metrics("val")
    per_class = rep.validation(P(1, 3), metrics, counts)
    assert metrics["val/acc"] == 0.75
    assert per_class == {"a": 1.0, "b": 0.5, "c": 1.0}  # the loop hands it to the run record
    json.dumps(per_class)
    scalars = [c[1] for c in tracker.named("scalars") if c[2] == 3]
    assert {**metrics, "epoch": 1} in scalars and {
        "val_class/a": 1.0,
        "val_class/b": 0.5,
        "val_class/c": 1.0,
    } in scalars
    assert ("image", "val/confusion_matrix", 3) in tracker.calls
    # no flush: the run flushes right before each checkpoint (remote trackers never resend steps)
    assert ("flush",) not in tracker.calls
    rep.finish({"optim": {"lr": 0.1}}, [{"epoch": 1, "step": 3, **metrics}])
    assert (Path(tmp_path) / "curves.png").stat().st_size > 0
    assert (Path(tmp_path) / "confusion_val.png").stat().st_size > 0
    (hparams,) = tracker.named("hparams")
    assert hparams[1] == {"optim": {"lr": 0.1}} and hparams[2]["val/acc"] == 0.75


def test_an_inactive_reporter_writes_nothing(tmp_path):
    rep, tracker = make_reporter(tmp_path, active=False)  # a non-zero DDP rank
    counts = MetricCounts(3, torch.device("cpu"))
    counts.update(torch.eye(3), torch.tensor([0, 1, 2]), torch.tensor(1.0))
    rep.validation(P(1, 1), counts.metrics("val"), counts)
    rep.finish({}, [{"val/acc": 1.0}])
    assert tracker.calls == [] and list(tmp_path.iterdir()) == []
