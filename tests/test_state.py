"""The train state, the run record and the monitor: one list of stateful parts that checkpoints
and resume walk, one writer of summary.json / metrics.jsonl (strict JSON), one "is this better?".
Real runs (in-process, tiny fake data), real checkpoint files read back."""

from __future__ import annotations

import json
import math

import pytest
import torch

from athanor.config.settings import run_settings
from athanor.distributed import Dist
from athanor.engine.parts import build_parts, train_state
from athanor.engine.run import train_run
from athanor.engine.session import TrainingRun
from athanor.errors import NonFiniteError
from athanor.metrics.monitor import Monitor, is_better
from athanor.process.signals import StopSignals
from athanor.record.folder import RunDir
from athanor.record.record import MetricsLog, RunRecord
from athanor.record.resume import find_resume
from conftest import compose

TINY = (
    "data=fake",
    "data.num_train=64",
    "data.num_val=16",
    "data.batch_size=16",
    "data.image_size=8",
    "model=mlp",
    "model.hidden=[8]",
    "logger.progress=none",
    "logger.tensorboard=false",
    "logger.plots=false",
    "logger.image_grid=false",
)


def strict_json(text: str):
    """json.loads that refuses NaN/Infinity, as strict parsers do."""

    def refuse(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


class Tally:
    """A stateful part the run knows nothing about: a tensor and a count."""

    def __init__(self, value: float = 0.0) -> None:
        self.weights, self.count = torch.full((3,), value), 0

    def state_dict(self) -> dict:
        return {"weights": self.weights.clone(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.weights, self.count = state["weights"].clone(), state["count"]


def _job(config: dict, run: RunDir, tally: Tally) -> TrainingRun:
    """A TrainingRun whose train state lists one more part, added where the list is built."""
    parts = build_parts(config, run_settings(config), Dist(), torch.device("cpu"))
    job = TrainingRun(config, parts, run, Dist())
    job.state = train_state(
        parts,
        job.progress,
        Dist(),
        metrics_log=job.metrics_log,
        early_stopping=job.early_stopping,
        tally=tally,
    )
    return job


def test_a_new_stateful_part_is_saved_and_restored_without_touching_checkpoint_code(tmp_path):
    config = compose(*TINY, "trainer.epochs=1")
    run = RunDir(tmp_path / "run")
    saved = Tally(7.0)
    saved.count = 41
    job = _job(config, run, saved)
    job.open(None)
    with StopSignals() as signals:
        job.fit(signals)
    job.close("completed", None)
    ckpt = torch.load(run.checkpoints / "last.pt", weights_only=True)  # still weights_only
    assert list(ckpt["state"])[-2:] == ["tally", "rng"]  # RNG states stay last
    assert ckpt["state"]["tally"]["count"] == 41

    config = {**config, "resume": "auto"}  # this folder's finished run: no refusal, its state
    fresh = Tally(0.0)
    resumed = _job(config, run, fresh)
    resumed.open(find_resume(config, run.checkpoints))
    assert fresh.count == 41 and torch.equal(fresh.weights, torch.full((3,), 7.0))
    assert resumed.progress.step == ckpt["state"]["progress"]["step"] == 4
    # the record's best comes from the checkpoint's own metrics log, not from metrics.jsonl
    assert resumed.metrics_log.best == ckpt["state"]["metrics_log"]["best"] != {}


def test_a_checkpoint_without_a_part_resumes_with_that_part_fresh(tmp_path, caplog):
    config = compose(*TINY, "trainer.epochs=1")
    run = RunDir(tmp_path / "run")
    train_run(config, run.path)
    config = {**config, "resume": "auto"}  # this folder's finished run: no refusal, its state
    fresh = Tally(3.0)
    job = _job(config, run, fresh)
    job.open(find_resume(config, run.checkpoints))
    assert "has no tally state; it starts fresh" in caplog.text
    assert torch.equal(fresh.weights, torch.full((3,), 3.0))


@pytest.mark.parametrize(
    ("overrides", "steps", "reason"),
    [
        (("trainer.epochs=2", "trainer.max_steps=500"), 8, "epochs"),  # the cap is never reached
        (("trainer.epochs=2", "trainer.max_steps=3"), 3, "max_steps"),
        (("trainer.epochs=1",), 4, "epochs"),
    ],
)
def test_stop_reason_names_what_ended_the_run(tmp_path, overrides, steps, reason):
    train_run(compose(*TINY, *overrides), tmp_path / "run")
    summary = RunDir(tmp_path / "run").read_summary()
    assert (summary["status"], summary["steps"], summary["stop_reason"]) == (
        "completed",
        steps,
        reason,
    )


class NanLoss(torch.nn.Module):
    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.tensor(float("nan"))


def test_a_nan_validation_fails_the_run_and_never_becomes_best(tmp_path):
    config = compose(*TINY, "trainer.epochs=2")
    run = RunDir(tmp_path / "run")
    parts = build_parts(config, run_settings(config), Dist(), torch.device("cpu"))
    parts.eval_loss = NanLoss()
    job = TrainingRun(config, parts, run, Dist())
    job.open(None)
    with StopSignals() as signals, pytest.raises(NonFiniteError, match="epoch 1.*val/loss=nan"):
        job.fit(signals)
    job.close("failed", "NonFiniteError")
    assert not (run.checkpoints / "best.pt").exists()
    assert not (run.checkpoints / "last.pt").exists()  # the NaN validation saved nothing
    assert strict_json(run.summary.read_text())["status"] == "failed"


def test_the_run_record_writes_strict_json_naming_non_finite_values(tmp_path):
    run = RunDir(tmp_path)
    record = RunRecord(run, MetricsLog(Monitor("val/acc", "max")))
    record.start()
    assert record.evaluation({"step": 1, "val/acc": 0.5, "val/loss": math.inf}) is True
    assert record.evaluation({"step": 2, "val/acc": math.nan, "val/loss": 1.0}) is False
    lines = [strict_json(line) for line in run.metrics.read_text().splitlines()]
    assert lines[0]["val/loss"] is None and lines[0]["nonfinite"] == ["val/loss=inf"]
    assert lines[1]["val/acc"] is None and lines[1]["nonfinite"] == ["val/acc=nan"]
    summary = record.finish("completed")
    written = strict_json(run.summary.read_text())
    assert written["best"]["step"] == 1 and written["final"]["val/acc"] is None
    assert written["nonfinite"] == ["best.val/loss=inf", "final.val/acc=nan"]
    assert summary["status"] == written["status"] == "completed"


def test_monitor_is_the_one_judge_of_better():
    assert is_better(0.5, None, "max") and not is_better(math.nan, None, "max")
    assert not is_better(0.5, 0.5, "max") and is_better(0.4, 0.5, "min")
    assert not is_better(0.505, 0.5, "max", min_delta=0.01) and is_better(0.52, 0.5, "max", 0.01)
    monitor = Monitor("val/loss", "min", min_delta=0.1)
    assert [monitor.update({"val/loss": v}) for v in (1.0, 0.95, math.nan, 0.8)] == [
        True,
        False,
        False,
        True,
    ]
    assert monitor.state_dict() == {"best": 0.8, "stale": 0}
    again = Monitor("val/loss", "min")
    again.load_state_dict(monitor.state_dict())
    assert (again.best, again.stale) == (0.8, 0)
    assert Monitor("val/acc", "max").best_of([0.2, math.nan, None, 0.7, 0.5]) == 0.7
