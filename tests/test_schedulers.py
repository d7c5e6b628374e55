"""Every schedule's LR curve against its closed-form formula (with and without warmup), the
plateau schedule driven by validation metrics, per-optimizer-step stepping through the real CLI
under gradient accumulation, and the impossible combinations refused before training."""

from __future__ import annotations

import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from athanor.engine.build import validate
from athanor.errors import ConfigError
from athanor.optim import SCHEDULERS
from athanor.optim.schedulers import build_schedule
from conftest import FAST, compose

BASE, SPE, TOTAL = 0.8, 10, 100  # base LR, optimizer steps per epoch, steps in the run
POINTS = (0, 1, 5, 9, 10, 11, 25, 29, 30, 31, 50, 77, 98, 99)


def lr_curve(spec: dict, total: int = TOTAL, spe: int = SPE, upto: int = TOTAL) -> list[float]:
    """LR after t optimizer steps, for t = 0..upto, as the loop would see it."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=BASE)
    schedule = build_schedule(spec, optimizer, total_steps=total, steps_per_epoch=spe)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(upto):
        optimizer.step()
        schedule.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def with_warmup(formula, warmup: int, factor: float):
    """Linear ramp from factor x base to base over `warmup` steps, then `formula(t - warmup)`."""

    def lr(t: int) -> float:
        if t < warmup:
            return BASE * (factor + (1 - factor) * t / warmup)
        return formula(t - warmup)

    return lr


# name, arguments, closed form lr(t) for t steps after the warmup `w` (t_abs = t + w)
CASES = {
    "none": ({}, lambda t, w: BASE),
    "cosine": (
        {"min_lr": 0.05},
        lambda t, w: 0.05 + (BASE - 0.05) * (1 + math.cos(math.pi * t / (TOTAL - w))) / 2,
    ),
    # step_size / milestones are epochs from the start of the run (the warmup counts)
    "step": ({"step_size": 3.0, "gamma": 0.5}, lambda t, w: BASE * 0.5 ** ((t + w) // 30)),
    "multistep": (
        {"milestones": [2.5, 5.0, 8.0], "gamma": 0.1},
        lambda t, w: BASE * 0.1 ** sum(t + w >= m * SPE for m in (2.5, 5.0, 8.0)),
    ),
    "exponential": ({"gamma": 0.5}, lambda t, w: BASE * 0.5 ** (t / SPE)),
    "poly": ({"power": 2.0}, lambda t, w: BASE * (1 - t / (TOTAL - w)) ** 2),
    "linear": ({"end_factor": 0.1}, lambda t, w: BASE * (1 - 0.9 * t / (TOTAL - w))),
}


def test_every_schedule_has_a_closed_form_case():
    assert set(SCHEDULERS.names()) == set(CASES) | {"onecycle", "plateau"}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize(
    "warmup", [None, {"warmup_steps": 10}, {"warmup_epochs": 2.0, "warmup_start_factor": 0.2}]
)
def test_schedule_matches_closed_form(name: str, warmup: dict | None):
    args, formula = CASES[name]
    warm = warmup or {}
    w = warm.get("warmup_steps", round(warm.get("warmup_epochs", 0) * SPE))
    factor = warm.get("warmup_start_factor", 0.01)
    lrs = lr_curve({"name": name, **args, **warm})
    expected = with_warmup(lambda t: formula(t, w), w, factor)
    for t in POINTS:
        assert lrs[t] == pytest.approx(expected(t), rel=1e-6, abs=1e-9), f"{name} at step {t}"


def test_onecycle_closed_form():
    spec = {"name": "onecycle", "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1.0e4}
    lrs = lr_curve(spec, upto=TOTAL - 1)
    start, end = BASE / 25, BASE / 25 / 1.0e4
    up = 0.3 * TOTAL - 1  # torch: the peak is reached at step pct_start x total - 1

    def cos(a: float, b: float, frac: float) -> float:
        return b + (a - b) / 2 * (1 + math.cos(math.pi * frac))

    for t in (0, 5, 15, 29, 30, 60, 99):
        want = cos(start, BASE, t / up) if t <= up else cos(BASE, end, (t - up) / (TOTAL - 1 - up))
        assert lrs[t] == pytest.approx(want, rel=1e-6), f"onecycle at step {t}"
    assert max(lrs) == pytest.approx(BASE)


def test_plateau_reduces_after_patience_validations_and_keeps_warmup():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=BASE)
    spec = {"name": "plateau", "monitor": "val/acc", "mode": "max", "patience": 1, "factor": 0.5}
    schedule = build_schedule(
        {**spec, "warmup_steps": 4, "warmup_start_factor": 0.25},
        optimizer,
        total_steps=40,
        steps_per_epoch=4,
    )
    lr = lambda: optimizer.param_groups[0]["lr"]  # noqa: E731
    assert lr() == pytest.approx(BASE * 0.25)
    for _ in range(4):
        optimizer.step()
        schedule.step()
    assert lr() == pytest.approx(BASE)
    accs = [0.5, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7]
    seen = []
    for acc in accs:  # one validation per epoch, per-step calls in between change nothing
        for _ in range(4):
            optimizer.step()
            schedule.step()
        schedule.step_validation({"val/loss": 1.0, "val/acc": acc})
        seen.append(lr())
    # patience 1: the second validation without improvement halves the LR
    assert seen == pytest.approx([BASE, BASE, BASE, BASE / 2, BASE / 2, BASE / 2, BASE / 4])
    state = schedule.state_dict()
    again = build_schedule(spec, optimizer, total_steps=40, steps_per_epoch=4)
    again.load_state_dict(state)
    assert again.on_validation.best == pytest.approx(0.7)


def test_plateau_on_a_metric_the_loop_does_not_log_fails_at_validation():
    schedule = build_schedule(
        {"name": "plateau", "monitor": "val/acc5"},
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1),
        total_steps=10,
        steps_per_epoch=5,
    )
    with pytest.raises(ConfigError, match="acc5 needs more than 5 classes"):
        schedule.step_validation({"val/loss": 1.0, "val/acc": 0.5})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["scheduler=plateau", "scheduler.monitor=val/f2"], "never logged"),  # no task logs it
        (["scheduler=plateau", "scheduler.monitor=val_ema/acc"], "needs trainer.ema.decay"),
        (["scheduler=onecycle", "+scheduler.warmup_steps=5"], "its own warmup"),
        (
            ["scheduler=multistep", "scheduler.milestones=[1.0]", "scheduler.warmup_epochs=2"],
            "inside the warmup",
        ),
    ],
)
def test_impossible_schedules_are_refused(overrides: list[str], message: str):
    config = compose(*overrides)
    with pytest.raises(ConfigError, match=message):
        validate(config)
        sched = config["scheduler"]
        build_schedule(
            sched,
            torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1),
            total_steps=100,
            steps_per_epoch=10,
        )


def test_plateau_on_ema_metric_is_valid_with_ema():
    validate(compose("scheduler=plateau", "scheduler.monitor=val_ema/acc", "trainer.ema.decay=0.9"))


def test_schedule_steps_per_optimizer_step_under_accumulation(train):
    """64 samples / batch 8 = 8 batches, accumulate 2 -> 4 optimizer steps per epoch, 3 epochs:
    the multistep milestone at epoch 1.5 is optimizer step 6, and TensorBoard logs every step."""
    result = train(
        *FAST,
        "trainer.epochs=3",
        "data=fake",
        "data.num_train=64",
        "data.num_val=16",
        "data.batch_size=8",
        "model=mlp",
        "model.hidden=[16]",
        "trainer.accumulate=2",
        "optim=sgd",
        "optim.lr=0.4",
        "scheduler=multistep",
        "scheduler.milestones=[1.5]",
        "scheduler.gamma=0.5",
        "scheduler.warmup_steps=2",
        "scheduler.warmup_start_factor=0.5",
        "checkpoint.enabled=false",
    )
    events = EventAccumulator(str(result.run_dir / "tb")).Reload()
    lrs = {e.step: e.value for e in events.Scalars("lr")}
    assert sorted(lrs) == list(range(1, 13))
    # after t steps: warmup 0.2 -> 0.4 over 2 steps, 0.4 until step 6, then 0.2
    want = {1: 0.3, 2: 0.4, 3: 0.4, 4: 0.4, 5: 0.4, 6: 0.2, 12: 0.2}
    for step, lr in want.items():
        assert lrs[step] == pytest.approx(lr, rel=1e-5), f"lr after step {step}"


def test_a_monitor_of_another_task_is_refused_once_the_task_is_known():
    """val/f1 is a multilabel metric: some run logs it (the check before the data is built lets
    it pass), a classification run never does (the check with the bound task refuses it)."""
    from athanor.metrics.monitor import check_monitors

    check_monitors({"scheduler.monitor": "val/f1"}, None, ema=False)
    with pytest.raises(ConfigError, match=r"scheduler.monitor='val/f1' .* Valid: val/loss"):
        check_monitors({"scheduler.monitor": "val/f1"}, 10, ema=False)
