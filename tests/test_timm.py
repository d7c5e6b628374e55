"""timm's zoo and optimizers (athanor[timm]): real timm models and optimizers train on digits,
pretrained weights load from disk only, and runs are named by their arch."""

from __future__ import annotations

import pytest
import torch

from athanor.engine.build import build_optimizer
from athanor.errors import ConfigError
from athanor.models import MODELS
from conftest import compose

timm = pytest.importorskip("timm")

# test_resnet: timm's own tiny ResNet for tests (0.37 M params; runs on 8x8 digits)
TINY = ("model=timm", "model.arch=test_resnet")
QUICK = ("trainer.epochs=2", "logger.progress=plain", "optim.lr=3.0e-3")


def test_timm_model_trains_on_digits_and_the_run_is_named_by_its_arch(train):
    run = train(*TINY, *QUICK)
    accs = [m["val/acc"] for m in run.metrics() if "val/acc" in m]
    assert accs[-1] > 0.8 and accs[-1] > accs[0], accs
    assert run.run_dir.name.endswith("_test_resnet_digits"), run.run_dir
    assert "model test_resnet (timm):" in run.output


def test_drop_path_rate_and_timm_kwargs_reach_the_model():
    model = MODELS.build(
        {
            "name": "timm",
            "arch": "test_resnet",
            "drop_path_rate": 0.2,
            "kwargs": {"drop_rate": 0.3},
        },
        num_classes=3,
        in_channels=1,
        image_size=16,
    )
    assert model.drop_rate == 0.3
    rates = [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"]
    assert rates and max(rates) == pytest.approx(0.2)
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 3)


def test_archs_with_a_fixed_input_size_are_built_for_the_data():
    spec = {"name": "timm", "arch": "test_vit", "kwargs": {"patch_size": 4}}
    model = MODELS.build(spec, num_classes=10, in_channels=1, image_size=8)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"arch": "test_resnett"}, "not a timm model. Did you mean 'test_resnet'"),
        ({"arch": "test_resnet", "kwargs": {"no_such_option": 1}}, "no_such_option"),
        ({"arch": "test_resnet", "pretrained": "/nowhere/w.pth"}, "/nowhere/w.pth: no such file"),
    ],
)
def test_bad_timm_options_are_refused_with_the_value(spec, message):
    with pytest.raises(ConfigError, match=message):
        MODELS.build({"name": "timm", **spec}, num_classes=10, in_channels=1, image_size=8)


def _saved_weights(path) -> dict[str, torch.Tensor]:
    """ImageNet-shaped test_resnet weights (3 channels, 1000 classes), as timm publishes them."""
    torch.manual_seed(1)
    state = timm.create_model("test_resnet").state_dict()
    torch.save(state, path)
    return state


def test_pretrained_loads_a_local_file_adapting_stem_and_head(tmp_path):
    saved = _saved_weights(tmp_path / "w.pth")
    spec = {"name": "timm", "arch": "test_resnet", "pretrained": str(tmp_path / "w.pth")}
    model = MODELS.build(spec, num_classes=10, in_channels=1, image_size=8)
    name = "layer1.0.conv1.weight"
    assert torch.equal(model.state_dict()[name], saved[name])
    assert model.get_classifier().out_features == 10  # a fresh head for the data's classes


@pytest.mark.slow  # two runs of the CLI
def test_pretrained_true_reads_timms_cache_and_never_downloads(train, tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "torch")}
    refused = train(*TINY, "model.pretrained=true", "trainer.epochs=1", expect=2, env=env)
    assert "are not on this machine" in refused.stderr and "never downloads" in refused.stderr
    assert "Traceback" not in refused.output
    # the Hugging Face hub cache layout timm reads for test_resnet's hf_hub_id
    repo = tmp_path / "hf" / "hub" / "models--timm--test_resnet.r160_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    _saved_weights(repo / "snapshots" / "abc123" / "pytorch_model.bin")
    loaded = train(*TINY, "model.pretrained=true", "trainer.epochs=1", env=env)
    assert "pretrained weights from" in loaded.output and "pytorch_model.bin" in loaded.output


@pytest.mark.parametrize(("opt", "lr"), [("lamb", "2.0e-2"), ("lion", "1.0e-3")])
def test_timm_optimizers_train_on_digits(train, opt, lr):
    run = train("optim=timm", f"optim.opt={opt}", *QUICK, f"optim.lr={lr}")
    accs = [m["val/acc"] for m in run.metrics() if "val/acc" in m]
    assert accs[-1] > 0.8, accs


def test_timm_optimizers_keep_athanors_parameter_groups():
    config = compose("optim=timm", "optim.opt=lamb", "optim.lr=1.0e-3", "optim.lr_mult={3: 10.0}")
    model = MODELS.build({"name": "mlp"}, num_classes=10, in_channels=1, image_size=8)
    optimizer = build_optimizer(config, model)
    assert type(optimizer).__name__ == "Lamb"
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["no_decay"]["weight_decay"] == 0.0 and groups["decay"]["weight_decay"] == 0.05
    assert groups["decay_x10"]["lr"] == pytest.approx(1.0e-2)
    assert {id(p) for p in groups["decay_x10"]["params"]} == {id(model[3].weight)}


def test_unknown_timm_optimizer_suggests_the_closest():
    model = MODELS.build({"name": "mlp"}, num_classes=10, in_channels=1, image_size=8)
    with pytest.raises(ConfigError, match="'lamm' is not a timm optimizer. Did you mean 'lamb'"):
        build_optimizer(compose("optim=timm", "optim.opt=lamm"), model)


def test_list_model_shows_timms_names(athanor_cmd):
    out = athanor_cmd("list", "model").stdout
    assert "timm archs: model=timm model.arch=<name>" in out
    assert "test_resnet" in out.split("timm archs")[1]
