"""Every preset in conf/experiment/ composes with its values on top, and (slow) trains a handful
of steps through the real CLI on small fake data of the preset's shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from athanor.engine.build import validate
from conftest import CONF, compose

PRESETS = sorted((CONF / "experiment").glob("*.yaml"))

# Fake data of each preset's shape: channels, classes, image size. Presets are data; a preset
# not listed gets CIFAR's shape. imagenet keeps its 3 channels and 1000 classes but uses 32x32
# instead of 224x224: ResNet-50 still ends on a 1x1 map, at 1/50 of the CPU time.
SHAPES = {
    "cifar100_resnet": (3, 100, 32),
    "imagenet_resnet50": (3, 1000, 32),
    "mnist_cnn": (1, 10, 28),
}
OWN_DATA = {"digits_quick"}  # embedded data: runs as is


def preset_overrides(path: Path) -> list[str]:
    """experiment=<name>, with data=fake of its shape, and augment=none when its augment config
    is not (yet) in conf/augment/."""
    args = [f"experiment={path.stem}"]
    if path.stem not in OWN_DATA:
        channels, classes, size = SHAPES.get(path.stem, (3, 10, 32))
        args += [
            "data=fake",
            f"data.channels={channels}",
            f"data.num_classes={classes}",
            f"data.image_size={size}",
        ]
    defaults = yaml.safe_load(path.read_text()).get("defaults", [])
    for entry in defaults:
        augment = entry.get("override /augment") if isinstance(entry, dict) else None
        if augment and not (CONF / "augment" / f"{augment}.yaml").exists():
            args.append("augment=none")
    return args


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_composes_with_its_values_on_top(path: Path):
    text = path.read_text()
    assert text.startswith("# @package _global_"), f"{path.name} must be a global package"
    config = compose(*preset_overrides(path))
    validate(config)
    preset = yaml.safe_load(text)
    for entry in preset.pop("defaults", []):
        for key, name in entry.items() if isinstance(entry, dict) else []:
            group = key.removeprefix("override /")
            if group not in ("data", "augment") or path.stem in OWN_DATA:
                assert config[group]["name"] == name, f"{path.stem}: {group}"
    composed = flatten(config)
    for key, value in flatten(preset).items():
        if key.startswith("data.") and path.stem not in OWN_DATA:
            continue  # replaced by the fake data in this test
        assert composed[key] == value, f"{path.stem}: {key}"


def test_the_issue_presets_exist():
    names = {p.stem for p in PRESETS}
    assert {"cifar10_resnet18", "cifar100_resnet", "imagenet_resnet50", "mnist_cnn"} <= names
    assert "digits_quick" in names


@pytest.mark.slow
@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_trains_a_handful_of_steps(train, path: Path):
    """6 epochs of one optimizer step each: long enough for every preset's warmup (5 epochs at
    most) to end inside the run, so the schedule after it is exercised too. Batches of 4 take
    the preset's LR scaled by 4 / its batch size (the linear scaling rule): an LR tuned for
    batches of 1024 diverges on 4 images. Precision is 32: this tests the recipe, not bf16."""
    preset = yaml.safe_load(path.read_text())
    scale = 4 / preset["data"]["batch_size"]
    lr = preset["optim"]["lr"] * scale
    min_lr = preset.get("scheduler", {}).get("min_lr")  # absolute, so it scales with the LR
    result = train(
        *preset_overrides(path),
        f"optim.lr={lr}",
        *([f"scheduler.min_lr={min_lr * scale}"] if min_lr else []),
        "trainer.precision=32",  # bf16 autocast is many times slower on CPUs without AMX
        "trainer.epochs=6",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "trainer.val_every=3",
        "data.batch_size=4",
        *([] if path.stem in OWN_DATA else ["data.num_train=8", "data.num_val=4"]),
        "logger.tensorboard=false",
        "logger.progress=plain",
        "checkpoint.enabled=false",
    )
    summary = result.summary()
    assert summary["status"] == "completed" and summary["steps"] == 6
    config = yaml.safe_load((result.run_dir / ".hydra" / "config.yaml").read_text())
    assert config["optim"]["lr"] == pytest.approx(lr)
    models = [e["override /model"] for e in preset["defaults"] if "override /model" in e]
    assert config["model"]["name"] == models[0]
    assert f"schedule {config['scheduler']['name']}: 6 optimizer steps" in result.output


def test_athanor_list_shows_every_group_name_and_preset(athanor_cmd):
    from athanor.engine.build import REGISTRIES
    from athanor.models.vision import classification_archs

    out = athanor_cmd("list").stdout
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    for registry in REGISTRIES.values():
        for entry in registry.entries():
            assert entry.name in lines and len(lines[entry.name].split()) > 1, entry.name
    for path in PRESETS:
        assert path.stem in lines and len(lines[path.stem].split()) > 1, path.stem
    assert "vgg19_bn" not in out  # the full torchvision list is behind `athanor list model`
    models = athanor_cmd("list", "model").stdout
    assert all(arch in models.split() for arch in classification_archs())
    assert "optim:" not in models
