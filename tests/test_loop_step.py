"""The optimizer step in isolation, with the real Stepper and Ema: accumulation, clipping,
precision, EMA, non-finite handling and the first-step checks, compared with closed forms."""

from __future__ import annotations

import contextlib
import logging
import math

import pytest
import torch
from torch import nn

from athanor.config.settings import EmaSettings, TrainerSettings
from athanor.data.loaders import Batch
from athanor.engine.ema import Ema
from athanor.engine.speed import CompiledOrEager
from athanor.engine.step import FiniteWatch, Models, Objective, Stepper, warn_precision
from athanor.errors import ConfigError, NonFiniteError


def mlp(seed: int = 0, unused: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 5))
    if unused:
        model.add_module("forgotten", nn.Identity())
        model.forgotten.extra = nn.Linear(3, 3)  # defined, never called in forward
    return model


def make_stepper(model: nn.Module, lr: float = 0.1, ema=None, train_model=None, **trainer):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    settings = TrainerSettings(**trainer)
    models = Models(model, train_model or model, ema)
    return Stepper(
        models,
        optimizer,
        scheduler,
        Objective(nn.CrossEntropyLoss()),
        settings,
        torch.device("cpu"),
    )


def batches(n: int, size: int, seed: int = 1) -> list[Batch]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(size, 3, 2, 2, generator=gen)
        y = torch.randint(0, 5, (size,), generator=gen)
        out.append(Batch(x, y, y))
    return out


def grads_of_one_step(stepper: Stepper, micro: list[Batch]) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}

    def capture(model: nn.Module) -> None:
        seen.update({n: p.grad.clone() for n, p in model.named_parameters()})

    stepper.step(micro, 0, on_grads=capture)
    return seen


def test_accumulated_micro_batches_give_the_gradients_of_one_big_batch():
    micro = batches(4, 8)
    big = Batch(*(torch.cat(parts) for parts in zip(*micro, strict=True)))
    accumulated = grads_of_one_step(make_stepper(mlp(), accumulate=4), micro)
    single = grads_of_one_step(make_stepper(mlp()), [big])
    assert accumulated.keys() == single.keys()
    for name, grad in single.items():
        torch.testing.assert_close(accumulated[name], grad, rtol=1e-5, atol=1e-7)


def test_under_ddp_only_the_last_micro_batch_all_reduces():
    class CountingDdp(nn.Module):  # the one DDP method the stepper relies on
        def __init__(self, module):
            super().__init__()
            self.module, self.no_sync_calls = module, 0

        def forward(self, x):
            return self.module(x)

        @contextlib.contextmanager
        def no_sync(self):
            self.no_sync_calls += 1
            yield

    model = mlp()
    wrapper = CountingDdp(model)
    make_stepper(model, train_model=wrapper, accumulate=3).step(batches(3, 4), 0)
    assert wrapper.no_sync_calls == 2


@pytest.mark.parametrize("mode", ["norm", "value"])
def test_clipping_bounds_the_gradients_the_optimizer_sees(mode):
    limit = 1.0e-3
    stepper = make_stepper(mlp(), grad_clip=limit, grad_clip_mode=mode)
    seen = grads_of_one_step(stepper, batches(1, 16))
    grads = list(seen.values())
    if mode == "norm":
        assert torch.nn.utils.get_total_norm(grads) <= limit * (1 + 1e-5)
    else:
        assert max(g.abs().max() for g in grads) <= limit
    # the reported norm is the one before clipping (what you want to watch)
    unclipped = grads_of_one_step(make_stepper(mlp()), batches(1, 16))
    before = torch.nn.utils.get_total_norm(list(unclipped.values()))
    stepper = make_stepper(mlp(), grad_clip=limit, grad_clip_mode=mode)
    result = stepper.step(batches(1, 16), 0, measure=True)
    assert float(result.grad_norm) == pytest.approx(float(before), rel=1e-5) and before > limit


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_weights_equal_the_closed_form_average(warmup):
    decay = 0.9
    model = mlp()
    ema = Ema(model, decay, warmup=warmup)
    stepper = make_stepper(model, ema=ema)
    history = []
    for i, batch in enumerate(batches(4, 8)):
        stepper.step([batch], i)
        history.append([p.detach().clone() for p in model.parameters()])
    # AveragedModel takes the first update as is, then lerps: e_n = d_n e_{n-1} + (1 - d_n) w_n
    expected = history[0]
    for n, weights in enumerate(history[1:], start=1):
        d = min(decay, (1 + n) / (10 + n)) if warmup else decay
        expected = [d * e + (1 - d) * w for e, w in zip(expected, weights, strict=True)]
    for got, want in zip(ema.model.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(next(ema.model.parameters()), history[-1][0])
    for bad in (0.0, 1.0, 1.5):  # 1.0 would freeze the EMA at the initial weights
        with pytest.raises(ConfigError, match=rf"trainer.ema.decay={bad} must be in \(0, 1\)"):
            EmaSettings(decay=bad)


def test_ema_of_a_batchnorm_model_averages_running_stats_and_copies_the_counter():
    """BatchNorm's num_batches_tracked is an integer buffer: lerp is not defined on it (this
    crashed every EMA run of simple_cnn); the float running stats are averaged."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    ema = Ema(model, 0.5, warmup=False)
    for _ in range(3):
        model(torch.randn(8, 4))
        ema.update(model, step=1)
    bn, ema_bn = model[1], ema.model[1]
    assert int(ema_bn.num_batches_tracked) == int(bn.num_batches_tracked) == 3
    assert not torch.allclose(ema_bn.running_mean, bn.running_mean)  # an average, not a copy


def test_bf16_autocast_runs_the_model_in_bf16_and_fp16_uses_a_grad_scaler():
    model = mlp()
    dtypes = []
    model[1].register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    make_stepper(model, precision="bf16").step(batches(1, 4), 0)
    assert dtypes == [torch.bfloat16]
    assert next(model.parameters()).dtype == torch.float32  # master weights stay fp32
    fp16 = make_stepper(mlp(), precision="fp16")
    assert fp16.scaler.is_enabled() and not make_stepper(mlp()).scaler.is_enabled()
    fp16.step(batches(1, 4), 0)
    assert fp16.scaler.state_dict()["scale"] > 0


def nan_batch(size: int = 4) -> Batch:
    x, y, _ = batches(1, size)[0]
    x[0, 0, 0, 0] = float("nan")
    return Batch(x, y, y)


def test_nonfinite_steps_are_skipped_up_to_the_limit_then_the_run_stops():
    model = mlp()
    stepper = make_stepper(model, skip_nonfinite=1)
    before = [p.detach().clone() for p in model.parameters()]
    assert stepper.step([nan_batch()], 6).skipped
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert not stepper.step(batches(1, 4), 7).skipped  # a good batch still trains
    assert stepper.nonfinite_skipped == 1
    with pytest.raises(NonFiniteError, match="optimizer step 9"):
        stepper.step([nan_batch()], 8)


def test_nonfinite_gradients_with_a_finite_loss_stop_the_run_too():
    class SqrtAtZero(nn.Module):  # forward sqrt(0) = 0 is fine; its derivative is inf
        def __init__(self):
            super().__init__()
            self.body, self.p = mlp(), nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return self.body(x) + torch.sqrt(self.p)

    # a measured step (the loop measures on its log steps) names the gradient norm
    stepper = make_stepper(SqrtAtZero())
    stepper.step(batches(1, 4), 0, measure=True)
    with pytest.raises(NonFiniteError, match="gradient norm became NaN/Inf at optimizer step 1"):
        stepper.check_finite()
    # an unmeasured one is still caught before a checkpoint could keep its weights
    stepper = make_stepper(SqrtAtZero())
    stepper.step(batches(1, 4), 0)
    stepper.check_finite()  # the loss itself was finite
    with pytest.raises(NonFiniteError, match="weights became NaN/Inf"):
        stepper.check_finite(weights=True)


def test_nonfinite_loss_is_found_at_the_next_check_naming_its_step():
    stepper = make_stepper(mlp())
    good = batches(3, 4)
    for i, batch in enumerate([good[0], nan_batch(), good[1], good[2]]):
        result = stepper.step([batch], i)  # no device sync, no exception inside the window
        assert result.grad_norm is None and not result.skipped
    with pytest.raises(NonFiniteError, match="loss became NaN/Inf at optimizer step 2"):
        stepper.check_finite()
    stepper.check_finite()  # the window was consumed: the next check starts afresh


def test_finite_values_whose_sum_overflows_are_no_error_and_a_nan_among_them_is_named():
    # the watch judges a window by one sum: a float32 overflow must fall back to each value
    watch = FiniteWatch()
    for step, value in enumerate([3e38, 3e38, 1.0], start=1):
        watch.add(step, torch.tensor(value), None)
    assert watch.first_bad() is None
    for step, value in enumerate([3e38, 3e38, float("nan"), float("-inf")], start=7):
        watch.add(step, torch.tensor(value), torch.tensor(1.0))
    assert watch.first_bad() == (9, "loss")
    assert watch.first_bad() is None and watch.pending == []  # consumed


def test_first_step_reports_unused_parameters_and_a_far_initial_loss(caplog):
    model = mlp(unused=True)
    with torch.no_grad():
        model[3].weight.mul_(100)  # a bad initialization: confident random predictions
    with caplog.at_level(logging.INFO, logger="athanor"):
        make_stepper(model).step(batches(1, 16), 0)
    text = caplog.text
    assert "received no gradient" in text and "forgotten.extra.weight" in text
    assert f"far from {math.log(5):.3f}, ln(5) for a fresh 5-class softmax" in text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="athanor"):
        make_stepper(mlp()).step(batches(1, 16), 0)
    assert "initial loss" in caplog.text and "far from" not in caplog.text
    assert "no gradient" not in caplog.text


def test_compile_failure_falls_back_to_eager_with_a_message(monkeypatch, caplog):
    def broken_compile(module, **_):
        def fail(*args, **kwargs):
            raise RuntimeError("backend exploded")

        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    model = mlp()
    wrapped = CompiledOrEager(model)
    x = batches(1, 4)[0].inputs
    with caplog.at_level(logging.WARNING, logger="athanor"):
        out = wrapped(x)
        wrapped(x)
    torch.testing.assert_close(out, model(x))
    assert caplog.text.count("torch.compile failed (RuntimeError: backend exploded)") == 1
    assert "falling back to eager" in caplog.text


def test_precision_warnings_say_when_a_choice_hurts_on_this_device(caplog):
    with caplog.at_level(logging.WARNING):
        warn_precision("32", torch.device("cpu"))
        assert not caplog.text
        warn_precision("bf16", torch.device("cpu"))
        warn_precision("fp16", torch.device("cpu"))
    assert "precision=bf16 on CPU" in caplog.text and "precision=fp16 on CPU" in caplog.text


def test_image_grid_matches_torchvisions_make_grid():
    from torchvision.utils import make_grid

    from athanor.observe.insight import image_grid

    for shape in [(64, 1, 8, 8), (10, 3, 32, 32), (7, 3, 5, 6)]:
        x = torch.randn(*shape)
        want = make_grid(x, nrow=math.ceil(math.sqrt(len(x))), normalize=True, scale_each=True)
        torch.testing.assert_close(image_grid(x), want)
