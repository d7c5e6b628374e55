"""Tasks and plain Datasets through the real CLI: each fixture is a small synthetic set made here,
trains a few epochs on CPU, and its metric must move the right way."""

from __future__ import annotations

import json
import re
import textwrap

import pytest
import torch

from athanor.metrics import build_metrics
from athanor.metrics.base import MetricSet
from conftest import cli

# A user's module: plain map-style Datasets registered with DATASETS, and a two-tower model.
USER_CODE = textwrap.dedent(
    '''
    import torch
    from torch import nn
    from torch.utils.data import Dataset, TensorDataset
    from athanor import DATASETS, MODELS


    def _split(n, seed, make):
        g = torch.Generator().manual_seed(seed)
        return make(n, g)


    def _regression(n, g):
        x = torch.randn(n, 6, generator=g)
        y = 50.0 + 10.0 * (x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 1.5, -1.0]))  # price-like units
        return TensorDataset(x, y)


    @DATASETS.register("houses")
    def houses():
        return _split(512, 0, _regression), _split(256, 1, _regression)


    def _tags(n, g):
        x = torch.randn(n, 8, generator=g)
        y = torch.stack([x[:, 0] > 0, x[:, 1] > 0.5, x[:, 2] + x[:, 3] > 0, x[:, 4] < -0.5], 1)
        return TensorDataset(x, y.float())  # multi-hot [4]


    @DATASETS.register("tags")
    def tags():
        return _split(512, 0, _tags), _split(256, 1, _tags)


    class Bars(Dataset):
        """Float non-square 3x12x20 images: class 0 has a bright left half, class 1 the right."""

        classes = ["left", "right"]

        def __init__(self, n, seed):
            g = torch.Generator().manual_seed(seed)
            self.y = torch.randint(0, 2, (n,), generator=g)
            self.x = torch.rand(n, 3, 12, 20, generator=g) * 0.5
            for i, label in enumerate(self.y.tolist()):
                cols = slice(0, 10) if label == 0 else slice(10, 20)
                self.x[i, :, :, cols] += 0.5

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return self.x[i], int(self.y[i])


    @DATASETS.register("bars")
    def bars():
        return Bars(256, 0), Bars(128, 1)


    @DATASETS.register("bars_shifted")
    def bars_shifted(offset: float = 0.0):
        """Bars whose training images are brighter by ``offset`` (validation's are not)."""
        train = Bars(256, 0)
        train.x += offset
        return train, Bars(128, 1)


    class Pairs(Dataset):
        """Dict inputs: an image and a feature vector; the class is in the features' sign."""

        def __init__(self, n, seed):
            g = torch.Generator().manual_seed(seed)
            self.image = torch.randint(0, 256, (n, 1, 6, 6), generator=g, dtype=torch.uint8)
            self.features = torch.randn(n, 4, generator=g)
            self.y = (self.features[:, 0] + self.features[:, 1] > 0).long()

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return {"image": self.image[i], "features": self.features[i]}, int(self.y[i])


    @DATASETS.register("pairs")
    def pairs():
        return Pairs(1024, 0), Pairs(256, 1)


    class TwoTower(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.image = nn.Sequential(nn.Flatten(), nn.Linear(36, 8))
            self.features = nn.Linear(4, 8)
            self.head = nn.Linear(16, num_classes)

        def forward(self, image, features):
            return self.head(torch.cat([self.image(image), self.features(features)], 1).relu())


    @MODELS.register("two_tower")
    def two_tower(*, num_classes):
        return TwoTower(num_classes)
    '''
)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "user_data.py").write_text(USER_CODE)
    for group, name in [
        ("data", n) for n in ("houses", "tags", "bars", "bars_shifted", "pairs")
    ] + [("model", "two_tower")]:
        (tmp_path / "conf" / group).mkdir(parents=True, exist_ok=True)
        (tmp_path / "conf" / group / f"{name}.yaml").write_text(f"name: {name}\n")
    return tmp_path


def run(train, project, *overrides, expect=0):
    return train(
        "imports=[user_data.py]",
        "trainer.log_every=4",
        "checkpoint.enabled=false",
        *overrides,
        cwd=project,
        expect=expect,
    )


def test_regression_mae_falls_in_the_targets_units(train, project):
    r = run(train, project, "data=houses", "task=regression", "trainer.epochs=4")
    history = [m for m in r.metrics() if "val/mae" in m]
    first, last = history[0]["val/mae"], history[-1]["val/mae"]
    assert last < 0.6 * first, (first, last)
    assert history[-1]["val/r2"] > 0.8 and "val/rmse" in history[-1]
    assert "float targets of width 1" in r.output and "targets standardized" in r.output
    assert "initial loss" in r.output and "far from" not in r.output
    summary = r.summary()
    assert summary["monitor"] == "val/mae" and summary["mode"] == "min"  # the task's monitor


@pytest.mark.parametrize("loss", ["l1", "smooth_l1"])
def test_the_other_regression_losses_train(train, project, loss):
    r = run(train, project, "data=houses", "task=regression", f"loss={loss}", "trainer.epochs=2")
    history = [m for m in r.metrics() if "val/mae" in m]
    assert history[-1]["val/mae"] < history[0]["val/mae"] or history[-1]["val/r2"] > 0.8
    assert "far from" not in r.output  # its fresh-model loss is what the task expects


def test_multilabel_map_and_f1_rise(train, project):
    r = run(train, project, "data=tags", "task=multilabel", "trainer.epochs=4")
    history = [m for m in r.metrics() if "val/map" in m]
    assert history[-1]["val/map"] > 0.85 and history[-1]["val/f1"] > 0.7
    assert history[-1]["val/map"] >= history[0]["val/map"]
    assert "ln(2) per output" in r.output and "far from" not in r.output


def test_non_square_float_images_classify_with_batch_augmentation(train, project):
    r = run(
        train,
        project,
        "data=bars",
        "model=simple_cnn",
        "model.width=8",
        "augment=random_erasing",
        "augment.flip=false",  # bars' class is left/right: a flip would swap it
        "trainer.epochs=6",
        "data.batch_size=32",
        "optim.lr=3.0e-3",
    )
    assert "inputs float32 3x12x20" in r.output and "2 classes" in r.output
    assert "augment: on the image input of the plain Datasets" in r.output
    assert r.metrics()[-1]["val/acc"] > 0.8


def test_dict_inputs_reach_the_model_as_keywords(train, project):
    r = run(
        train,
        project,
        "data=pairs",
        "model=two_tower",
        "trainer.epochs=2",
        "data.batch_size=32",
        "optim.lr=1.0e-2",
    )
    assert "dict(image: uint8 1x6x6, features: float32 4)" in r.output
    assert r.metrics()[-1]["val/acc"] > 0.8


def test_loss_terms_add_up_and_each_is_logged(train, tmp_path):
    r = train(
        "loss=terms",
        "loss.terms={cross_entropy: 1.0, focal: {weight: 0.5, gamma: 2.0}}",
        "trainer.max_steps=4",
        "trainer.log_every=2",
        "logger.progress=plain",
        "checkpoint.enabled=false",
    )
    lines = [line for line in r.output.splitlines() if "step 4/4: loss" in line]
    total, ce, focal = map(
        float, re.findall(r"loss ([\d.]+) \(cross_entropy ([\d.]+), focal ([\d.]+)\)", lines[0])[0]
    )
    assert total == pytest.approx(ce + 0.5 * focal, abs=2e-3)  # the summary is the weighted sum
    assert 0 < focal < ce  # focal down-weights the easy examples
    refused = train("task=classification", "loss=terms", "+loss.terms.mse=1.0", expect=2)
    assert "loss=mse does not fit task=classification" in refused.output


def test_a_loss_that_does_not_fit_the_task_is_refused_before_work(train, project):
    r = run(train, project, "data=houses", "task=regression", "loss=cross_entropy", expect=2)
    assert "loss=cross_entropy does not fit task=regression" in r.output
    assert "mse" in r.output and "Traceback" not in r.output


def test_regression_on_class_targets_says_what_fits(train, project):
    r = run(train, project, "task=regression", expect=2)  # digits: integer classes
    assert "task=regression needs float targets" in r.output and "Traceback" not in r.output


def test_metrics_sum_their_states_so_shards_equal_the_whole():
    """What DDP does (sum the states of every rank) gives the single-process values exactly."""
    g = torch.Generator().manual_seed(0)
    preds, targets = torch.rand(200, 3, generator=g), (torch.rand(200, 3, generator=g) > 0.5)
    names = ("mae", "rmse", "r2", "map", "f1")

    def fresh() -> MetricSet:
        return build_metrics(names, num_outputs=3, device=torch.device("cpu"))

    whole = fresh()
    whole.update(preds, targets.float())
    shards = [fresh(), fresh()]
    for shard, rows in zip(shards, (slice(0, 70), slice(70, 200)), strict=True):
        shard.update(preds[rows], targets[rows].float())
    summed = fresh()
    for name, metric in summed.metrics.items():
        for key in metric.states:
            metric.states[key] += sum(s.metrics[name].states[key] for s in shards)
    assert summed.values("val") == pytest.approx(whole.values("val"), abs=1e-12)
    perfect = fresh()
    perfect.update(targets.float(), targets.float())
    assert perfect.values("val")["val/map"] == pytest.approx(1.0)
    assert perfect.values("val")["val/mae"] == 0.0 and perfect.values("val")["val/f1"] == 1.0


def test_evaluate_reports_the_regression_metrics_of_a_checkpoint(train, project):
    r = run(
        train,
        project,
        "data=houses",
        "task=regression",
        "trainer.epochs=2",
        "checkpoint.enabled=true",
    )
    final = r.summary()["final"]
    ev = cli("athanor.evaluate", f"ckpt={r.run_dir}", cwd=project)
    report = json.loads(next((r.run_dir / "checkpoints").glob("eval_val_*.json")).read_text())
    assert report["task"] == "regression" and "mae" in ev.stdout
    # the target statistics come back from the checkpoint: the same numbers as training's
    best = r.summary()["best"]
    assert report["metrics"]["mae"] == pytest.approx(best["val/mae"], rel=1e-5)
    assert "top1" not in report and final["val/r2"] > 0


def test_evaluate_normalizes_with_the_statistics_training_measured(train, project):
    """data.normalize=auto measures the training split once; the checkpoint records the values
    (readable with weights_only=True) and evaluate applies them: a rebuilt training split whose
    statistics differ (data.offset) changes nothing, where measuring again would."""
    r = run(
        train,
        project,
        "data=bars_shifted",
        "data.normalize=auto",
        "model=simple_cnn",
        "model.width=8",
        "trainer.epochs=2",
        "data.batch_size=32",
        "checkpoint.enabled=true",
    )
    saved = torch.load(r.run_dir / "checkpoints" / "best.pt", weights_only=True)["data"]
    measured = re.search(r"data: plain Datasets.*\(mean \[([^]]+)\]", r.output).group(1)
    assert [f"{v:.4g}" for v in saved["mean"]] == measured.split(", ")
    assert saved["inputs"] == "float32 3x12x20" and saved["outputs"] == 2
    assert saved["class_names"] == ["left", "right"]
    ev = cli("athanor.evaluate", f"ckpt={r.run_dir}", "data.offset=3.0", cwd=project)
    assert "normalized as in training" in ev.output
    report = json.loads(next((r.run_dir / "checkpoints").glob("eval_val_*.json")).read_text())
    assert report["loss"] == pytest.approx(r.summary()["best"]["val/loss"], rel=1e-5)


def test_evaluate_refuses_data_whose_outputs_do_not_fit_the_checkpoint(train, project):
    r = run(train, project, "data=bars", "model=mlp", "trainer.epochs=1", "checkpoint.enabled=true")
    ev = cli("athanor.evaluate", f"ckpt={r.run_dir}", "data.num_classes=5", cwd=project, expect=2)
    said = " ".join(ev.output.split())  # the paragraph as one line
    assert "Traceback" not in said and "has 2 outputs" in said and "this data gives 5" in said


def _plain_loaders(splits, *overrides: str):
    """The real build path of a run's data: plain Datasets -> bundle -> augment -> loaders."""
    from athanor.augment.mixing import build_mixer
    from athanor.data.options import data_options
    from athanor.data.pipeline import build_loaders
    from athanor.data.prepare import apply_data_options
    from athanor.distributed import Dist
    from athanor.engine.build import build_augmentation
    from conftest import compose

    config = compose(*overrides)
    bundle = apply_data_options(splits, data_options({"batch_size": 8}))
    augmentation, mix = build_augmentation(config, bundle)
    return build_loaders(
        bundle,
        data_options({"batch_size": 8}),
        augmentation,
        build_mixer(mix, 2),
        seed=0,
        d=Dist(),
        device=torch.device("cpu"),
    )


class _Images(torch.utils.data.Dataset):
    """16 non-square uint8 images (dict: beside a feature vector), two classes."""

    def __init__(self, as_dict: bool = False):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 256, (16, 3, 12, 20), generator=g, dtype=torch.uint8)
        self.features = torch.randn(16, 4, generator=g)
        self.as_dict = as_dict

    def __len__(self):
        return 16

    def __getitem__(self, i):
        x = {"image": self.x[i], "features": self.features[i]} if self.as_dict else self.x[i]
        return x, i % 2


def _first(loader, epoch=0):
    return next(iter(loader.epoch(epoch)))


def test_batch_augmentations_apply_to_a_plain_datasets_image_input(caplog):
    """augment=cifar (crop + flip) changes the training batches against augment=none's (the same
    items: the order does not depend on the augmentation), reproducibly per (seed, epoch,
    batch); validation's are the images as they are; a dict's other inputs are untouched."""
    as_is = _first(_plain_loaders((_Images(), _Images()), "augment=none").train).inputs
    plain = _plain_loaders((_Images(), _Images()), "augment=cifar")
    val = _first(plain.val).inputs
    assert torch.allclose(val, _Images().x[:8].float() / 255)  # no augmentation, no statistics
    train, again = _first(plain.train).inputs, _first(plain.train).inputs
    assert train.shape == (8, 3, 12, 20) and torch.equal(train, again)
    assert not torch.equal(train, as_is)
    assert not torch.equal(train, _first(plain.train, epoch=1).inputs)
    with caplog.at_level("INFO"):
        pairs = _plain_loaders((_Images(as_dict=True), _Images(as_dict=True)), "augment=cifar")
    assert "on the image input (input 'image')" in caplog.text
    batch = _first(pairs.train).inputs
    pairs_as_is = _plain_loaders((_Images(as_dict=True), _Images(as_dict=True)), "augment=none")
    reference = _first(pairs_as_is.train).inputs
    assert batch["image"].shape == (8, 3, 12, 20) and batch["image"].dtype == torch.float32
    assert not torch.equal(batch["image"], reference["image"])
    assert torch.equal(batch["features"], reference["features"])


def test_mixup_mixes_a_single_image_input_and_is_refused_for_a_dict(caplog):
    mixed = _first(_plain_loaders((_Images(), _Images()), "augment=mixup").train)
    assert mixed.targets.shape == (8, 2) and mixed.targets.dtype == torch.float32
    assert torch.allclose(mixed.targets.sum(1), torch.ones(8))  # class probabilities
    with pytest.raises(Exception, match="mix one image input"):
        _plain_loaders((_Images(as_dict=True), _Images(as_dict=True)), "augment=mixup")


def test_augmenting_inputs_that_hold_no_image_says_so(train, project, caplog):
    r = run(
        train, project, "data=houses", "task=regression", "augment=random_erasing",
        "trainer.max_steps=2",
    )  # fmt: skip
    assert "hold no image" in " ".join(r.output.split())
    refused = run(train, project, "data=houses", "task=regression", "augment=mixup", expect=2)
    assert "task=regression has other targets" in " ".join(refused.output.split())
    assert "Traceback" not in refused.output
