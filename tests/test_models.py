"""Every registered model builds for a small input and trains one step on CPU; every torchvision
classification arch builds by name; weights, freeze and init options do what they say."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from athanor.engine.build import build_data, build_model, build_optimizer
from athanor.errors import ConfigError
from athanor.models import MODELS
from athanor.models.options import apply_model_options
from athanor.models.vision import ARCH_DEFAULTS, FIRST_CLASS, classification_archs
from conftest import FAST, compose


def forward_backward(model: nn.Module, channels: int = 3, size: int = 32, classes: int = 10):
    x = torch.randn(2, channels, size, size)
    logits = model(x)
    assert logits.shape == (2, classes)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_registered_model_trains_one_step_on_32x32(name: str):
    torch.manual_seed(0)
    model = MODELS.build({"name": name}, num_classes=10, in_channels=3, image_size=32)
    forward_backward(model)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "cifar_resnet18", "vit_b_16"])
def test_first_conv_adapts_to_one_channel(name: str):
    model = MODELS.build({"name": name}, num_classes=3, in_channels=1, image_size=32)
    forward_backward(model, channels=1, classes=3)


def test_first_class_names_and_every_torchvision_arch_is_reachable():
    archs = classification_archs()
    assert set(FIRST_CLASS) <= set(archs) and set(FIRST_CLASS) <= set(MODELS.names())
    assert len(archs) >= 80 and "regnet_y_400mf" in archs and "swin_t" in archs


@pytest.mark.slow
@pytest.mark.parametrize("arch", classification_archs())
def test_every_torchvision_arch_builds_by_name(arch: str):
    """`model=torchvision model.arch=<arch>`: built on the meta device (no memory, no compute),
    run on a meta batch at the arch's usual input size: the head has the data's classes."""
    spec = {"name": "torchvision", "arch": arch}
    size = 299 if arch == "inception_v3" else 224
    if arch.startswith("regnet"):  # torchvision computes regnet widths with tensor ops
        if arch not in ("regnet_x_400mf", "regnet_y_400mf"):
            pytest.skip("the large regnets cannot be built on the meta device (same code path)")
        model = MODELS.build(spec, num_classes=7, in_channels=3, image_size=size).to("meta")
    else:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = MODELS.build(spec, num_classes=7, in_channels=3, image_size=size)
    model.eval()
    out = model(torch.empty(2, 3, size, size, device="meta"))
    assert out.shape == (2, 7)
    assert set(ARCH_DEFAULTS) <= set(classification_archs())


def test_unknown_arch_suggests_the_closest():
    with pytest.raises(ConfigError, match="Did you mean 'resnet50'"):
        MODELS.build(
            {"name": "torchvision", "arch": "resnet05"},
            **dict(num_classes=2, in_channels=3, image_size=32),
        )


def fake_data(*overrides: str) -> tuple[dict, object]:
    config = compose("data=fake", "data.num_train=8", "data.num_val=4", *overrides)
    bundle, _ = build_data(config)
    return config, bundle


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=vit_b_16"], "not a multiple of 16"),
        (["model=convnext_tiny"], "cannot run on 1x8x8 images"),
    ],
)
def test_models_that_cannot_take_the_input_size_fail_clearly(overrides, message):
    config = compose("data=digits", *overrides)  # 8x8 images
    bundle, _ = build_data(config)
    with pytest.raises(ConfigError, match=message):
        build_model(config, bundle)


def test_weights_round_trip_from_a_ddp_checkpoint(tmp_path):
    torch.manual_seed(1)
    source = MODELS.build({"name": "simple_cnn"}, num_classes=10, in_channels=3, image_size=32)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}  # as saved from DDP
    path = tmp_path / "ddp.pt"
    torch.save({"model": state, "epoch": 3}, path)
    torch.manual_seed(2)
    config, bundle = fake_data("model=simple_cnn", f"model.weights={path}")
    model = build_model(config, bundle)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_weights_with_another_head_need_strict_false(tmp_path, caplog):
    source = MODELS.build({"name": "simple_cnn"}, num_classes=5, in_channels=3, image_size=32)
    path = tmp_path / "five.pt"
    torch.save(source.state_dict(), path)
    target = MODELS.build({"name": "simple_cnn"}, num_classes=10, in_channels=3, image_size=32)
    with pytest.raises(ConfigError, match="shapes differ.*model.strict=false"):
        apply_model_options(target, {"weights": str(path)})
    with caplog.at_level("INFO"):
        apply_model_options(target, {"weights": str(path), "strict": False})
    assert "shape-skipped 2" in caplog.text  # the head's weight and bias stay fresh
    assert torch.equal(target[0][0].weight, source[0][0].weight)
    with pytest.raises(ConfigError, match="does not exist"):
        apply_model_options(target, {"weights": str(tmp_path / "nope.pt")})


def test_weights_from_a_real_run_checkpoint(train, tmp_path):
    tiny = (*FAST, "model=simple_cnn", "data=fake", "data.num_train=32", "data.num_val=8")
    first = train(*tiny, "trainer.max_steps=1", "logger.tensorboard=false")
    ckpt = first.run_dir / "checkpoints" / "last.pt"
    second = train(
        *tiny,
        "trainer.max_steps=1",
        "logger.tensorboard=false",
        f"model.weights={ckpt}",
        "model.freeze=[0]",
        cwd=tmp_path,
    )
    assert f"from {ckpt} (missing 0, unexpected 0, shape-skipped 0)" in second.output
    assert "model: froze 0" in second.output


def test_freeze_stops_gradients_and_updates():
    config, bundle = fake_data("model=simple_cnn", "model.freeze=[0,1]")
    model = build_model(config, bundle)
    optimizer = build_optimizer(compose("optim=sgd"), model)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if n[0] in "01"}
    assert frozen and all(not model.get_parameter(n).requires_grad for n in frozen)
    forward_backward(model)
    optimizer.step()
    for name, before in frozen.items():
        assert model.get_parameter(name).grad is None
        assert torch.equal(model.get_parameter(name), before), name
    opt_params = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not any(id(model.get_parameter(n)) in opt_params for n in frozen)
    with pytest.raises(ConfigError, match="matches no parameter"):
        apply_model_options(model, {"freeze": ["backbone"]})


@pytest.mark.parametrize(
    ("scheme", "std"),
    [
        ("kaiming", lambda fan_in, fan_out: (2 / fan_out) ** 0.5),
        ("xavier", lambda fan_in, fan_out: (2 / (fan_in + fan_out)) ** 0.5),
    ],
)
def test_init_sets_the_scheme_statistics(scheme, std):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 256, 3), nn.Linear(512, 128))
    default = model[0].weight.std().item()
    apply_model_options(model, {"init": scheme})
    conv = model[0].weight
    want = std(16 * 9, 256 * 9)
    assert conv.std().item() == pytest.approx(want, rel=0.03)
    assert abs(default - want) / want > 0.2  # torch's default init is measurably different
    assert torch.count_nonzero(model[0].bias) == 0
    with pytest.raises(ConfigError, match="model.init='he'"):
        apply_model_options(model, {"init": "he"})
