"""Every optimizer builds with parameter groups: biases and norm weights really get weight decay
0, an lr_mult prefix really scales its group's LR, and the groups reach the log."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from athanor.engine.build import build_optimizer
from athanor.errors import ConfigError
from athanor.optim import OPTIMIZERS
from conftest import CONF, FAST


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.ln = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.bn(self.conv(x)).mean((2, 3))
        return self.fc(self.ln(x))


def optimizer_for(name: str, **overrides) -> tuple[Net, torch.optim.Optimizer]:
    spec = yaml.safe_load((CONF / "optim" / f"{name}.yaml").read_text())
    spec.update({"weight_decay": 0.01, "lr": 0.02, **overrides})
    model = Net()
    return model, build_optimizer({"optim": spec}, model)


def group_of(optimizer, param) -> dict:
    return next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))


def test_the_issue_lists_every_optimizer():
    assert set(OPTIMIZERS.names()) == {
        "sgd",
        "adam",
        "adamw",
        "rmsprop",
        "radam",
        "nadam",
        "adagrad",
        "timm",  # timm's optimizers by optim.opt (issue 13)
    }


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_no_decay_and_lr_mult_build_the_right_groups(name: str):
    model, optimizer = optimizer_for(name, no_decay=["bias", "norm"], lr_mult={"fc": 10.0})
    no_decay = [model.conv.bias, model.bn.weight, model.bn.bias, model.ln.weight, model.ln.bias]
    for p in no_decay:
        assert group_of(optimizer, p)["weight_decay"] == 0.0
    assert group_of(optimizer, model.conv.weight)["weight_decay"] == 0.01
    assert group_of(optimizer, model.conv.weight)["lr"] == pytest.approx(0.02)
    head_w, head_b = group_of(optimizer, model.fc.weight), group_of(optimizer, model.fc.bias)
    assert head_w["lr"] == pytest.approx(0.2) and head_w["weight_decay"] == 0.01
    assert head_b["lr"] == pytest.approx(0.2) and head_b["weight_decay"] == 0.0
    counted = sum(len(g["params"]) for g in optimizer.param_groups)
    assert counted == len(list(model.parameters()))
    # one real step works with the groups
    model(torch.randn(2, 3, 5, 5)).sum().backward()
    before = model.fc.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, model.fc.weight)


def test_without_no_decay_every_parameter_decays():
    model, optimizer = optimizer_for("sgd", no_decay=[], lr_mult=None)
    assert len(optimizer.param_groups) == 1
    assert optimizer.param_groups[0]["weight_decay"] == 0.01


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lr_mult": {"head": 10.0}}, "matches no module.*Top-level modules: bn, conv, fc, ln"),
        ({"no_decay": ["biases"]}, "valid entries: bias, norm, embedding"),
        ({"lr": -1.0}, r"optim.lr=-1.0 is out of range: a learning rate must be > 0"),
        ({"lr": float("nan")}, "a learning rate must be > 0"),
        ({"weight_decay": -0.1}, r"optim.weight_decay=-0.1 is out of range: it must be >= 0"),
    ],
)
def test_bad_groups_are_refused(overrides: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        optimizer_for("sgd", **overrides)


def test_the_log_prints_the_groups_and_tensorboard_their_lrs(train):
    result = train(
        *FAST,
        "data=fake",
        "data.num_train=32",
        "data.num_val=8",
        "data.batch_size=16",
        "model=simple_cnn",
        "optim=sgd",
        "optim.lr=0.01",
        "optim.nesterov=true",
        "optim.lr_mult={3: 10.0}",  # simple_cnn's stage 2 (a Sequential index)
        "scheduler=none",
        "checkpoint.enabled=false",
    )
    assert "optim sgd: decay:" in result.output
    assert "no_decay_x10:" in result.output and "lr 0.1," in result.output
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(result.run_dir / "tb")).Reload()
    assert events.Scalars("lr/decay_x10")[-1].value == pytest.approx(0.1)
    assert events.Scalars("lr/decay")[-1].value == pytest.approx(0.01)
