"""`data=table`: CSV and Parquet files made here, read into standardized float vectors with
classes or float targets; bad files and columns are one-paragraph errors naming the value."""

from __future__ import annotations

import json

import pytest
import torch

from athanor.data import DATASETS
from athanor.data.options import data_options
from athanor.data.plain import PlainNormalize
from athanor.data.prepare import apply_data_options
from athanor.errors import ConfigError
from athanor.models import MODELS
from conftest import cli

pd = pytest.importorskip("pandas")


def houses(n: int = 400, seed: int = 0):
    """A synthetic housing table: price is linear in area and rooms plus a city premium."""
    g = torch.Generator().manual_seed(seed)
    area = torch.rand(n, generator=g) * 150 + 30  # m², far from unit scale on purpose
    rooms = torch.randint(1, 6, (n,), generator=g)
    city = [["north", "south", "east"][int(i)] for i in torch.randint(0, 3, (n,), generator=g)]
    premium = torch.tensor([{"north": 50.0, "south": 0.0, "east": 20.0}[c] for c in city])
    noise = torch.randn(n, generator=g) * 5
    price = 2.0 * area + 10.0 * rooms + premium + noise
    return pd.DataFrame(
        {
            "area": area.numpy(),
            "rooms": rooms.numpy(),
            "city": city,
            "price": price.numpy().astype("float64"),
            "expensive": ["yes" if p > 250 else "no" for p in price.tolist()],
        }
    )


def build(**spec):
    """As the run builds it: the group-wide data.* keys (val_split) reach the builder too."""
    from athanor.data.prepare import builder_options

    spec = {"name": "table", **spec}
    return DATASETS.build(spec, **builder_options(spec))


def test_numeric_and_one_hot_features_standardized_with_train_statistics(tmp_path):
    houses().to_csv(tmp_path / "houses.csv", index=False)
    train, val = build(path=str(tmp_path / "houses.csv"), target="price", drop=["expensive"])
    assert train.columns == ["area", "rooms", "city=east", "city=north", "city=south"]
    assert len(train) == 320 and len(val) == 80  # data.val_split=0.2 held out
    # the builder keeps the file's values; the run standardizes with the train-split
    # statistics it records (data.normalize=dataset): as the run's normalizer does it
    bundle = apply_data_options((train, val), data_options({}))
    assert bundle.mean == train.mean and bundle.std == train.std
    normalize = PlainNormalize(bundle.mean, bundle.std, bundle.info["input_shape"], "cpu")
    standardized, held_out = normalize.inputs(train.features), normalize.inputs(val.features)
    assert torch.allclose(standardized.mean(0), torch.zeros(5), atol=1e-5)
    assert torch.allclose(standardized.std(0), torch.ones(5), atol=1e-4)
    assert not torch.allclose(held_out.mean(0), torch.zeros(5), atol=1e-5)  # train's stats
    x, y = train[0]
    assert x.dtype == torch.float32 and x.shape == (5,) and y.dtype == torch.float32
    assert not hasattr(train, "classes")  # float targets: regression


def test_the_hold_out_is_seeded_and_the_same_on_every_build(tmp_path):
    houses().to_csv(tmp_path / "houses.csv", index=False)
    spec = {"path": str(tmp_path / "houses.csv"), "target": "price", "drop": ["expensive"]}
    (a, va), (b, vb) = build(**spec), build(**spec)
    assert torch.equal(va.features, vb.features) and torch.equal(a.targets, b.targets)
    other, _ = build(**spec, val_split=0.5)
    assert len(other) == 200


def test_text_targets_are_classes_and_parquet_reads_the_same(tmp_path):
    pytest.importorskip("pyarrow")
    frame = houses()
    frame.to_parquet(tmp_path / "houses.parquet")
    frame.to_csv(tmp_path / "houses.csv", index=False)
    spec = {"target": "expensive", "drop": ["price"]}
    train, val = build(path=str(tmp_path / "houses.parquet"), **spec)
    csv_train, _ = build(path=str(tmp_path / "houses.csv"), **spec)
    assert train.classes == ["no", "yes"] and train.targets.dtype == torch.long
    assert torch.allclose(train.features, csv_train.features, atol=1e-5)
    rooms, _ = build(path=str(tmp_path / "houses.csv"), target="rooms", drop=["price", "expensive"])
    assert rooms.classes == ["1", "2", "3", "4", "5"]  # whole numbers: classes, numeric order
    as_float, _ = build(
        path=str(tmp_path / "houses.csv"), target="rooms", target_type="float", drop=["expensive"]
    )
    assert as_float.targets.dtype == torch.float32


def _fit(train, val, *, classes: int | None, epochs: int = 15) -> list[float]:
    """A hand loop over athanor's mlp on the table: the val metric after each epoch."""
    torch.manual_seed(0)
    width = train.features.shape[1]
    model = MODELS.build(
        {"name": "mlp", "hidden": [32]}, num_classes=classes or 1, in_channels=width, image_size=1
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    scale = 1.0 if classes else float(train.targets.std())
    history = []
    for _ in range(epochs):
        for i in range(0, len(train), 32):
            x, y = train.features[i : i + 32], train.targets[i : i + 32]
            out = model(x.view(len(x), width, 1, 1))
            loss = (
                torch.nn.functional.cross_entropy(out, y)
                if classes
                else torch.nn.functional.mse_loss(out.squeeze(1) * scale, y) / scale**2
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out = model(val.features.view(len(val), width, 1, 1))
            metric = (
                (out.argmax(1) == val.targets).float().mean()
                if classes
                else (out.squeeze(1) * scale - val.targets).abs().mean()
            )
        history.append(float(metric))
    return history


def test_a_table_trains_for_classification_and_regression(tmp_path):
    houses().to_csv(tmp_path / "houses.csv", index=False)
    train, val = build(path=str(tmp_path / "houses.csv"), target="expensive", drop=["price"])
    accuracy = _fit(train, val, classes=2)
    assert accuracy[-1] > 0.8, accuracy
    train, val = build(path=str(tmp_path / "houses.csv"), target="price", drop=["expensive"])
    mae = _fit(train, val, classes=None)
    assert mae[-1] < mae[0] / 3 and mae[-1] < 15, mae  # price std is ~90


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "data=table needs data.path="),
        ({"path": "nowhere.csv", "target": "price"}, "data.path=nowhere.csv does not exist"),
        ({"path": "houses.xlsx", "target": "price"}, ".xlsx is not a table format"),
        ({"target": "prize"}, "data.target=prize is not a column of .*Did you mean 'price'"),
        ({"target": "price", "categorical": "refuse"}, "column 'city' is not numeric"),
        ({"target": "price", "max_categories": 2}, "column 'city' .*3 distinct values"),
        ({"target": "price", "drop": ["area", "rooms", "city", "expensive"]}, "no feature columns"),
        ({"target": "price", "drop": ["size"]}, r"data.drop names \['size'\]"),
    ],
)
def test_bad_tables_are_refused_naming_the_value(tmp_path, monkeypatch, spec, message):
    monkeypatch.chdir(tmp_path)
    houses().to_csv(tmp_path / "houses.csv", index=False)
    spec = {"path": "houses.csv", **spec} if "target" in spec and "path" not in spec else spec
    with pytest.raises(ConfigError, match=message):
        build(**spec)


def test_empty_feature_values_are_refused_naming_the_column(tmp_path):
    frame = houses()
    frame.loc[3, "area"] = None
    frame.to_csv(tmp_path / "holes.csv", index=False)
    with pytest.raises(ConfigError, match="feature column 'area' has 1 empty values"):
        build(path=str(tmp_path / "holes.csv"), target="price")


def test_train_on_a_csv_through_the_cli_and_evaluate_it(tmp_path):
    houses().to_csv(tmp_path / "houses.csv", index=False)
    data = ("data=table", "data.path=houses.csv", "data.target=expensive", "data.drop=[price]")
    run = cli("athanor.train", *data, "trainer.epochs=8", "logger.progress=plain", cwd=tmp_path)
    accs = [m["val/acc"] for m in run.metrics() if "val/acc" in m]
    assert accs[-1] > 0.8 and accs[-1] >= accs[0], accs
    assert "data table: houses.csv: 5 features" in run.output
    evaluated = cli("athanor.evaluate", f"ckpt={run.run_dir}", cwd=tmp_path)
    report = json.loads(next(run.run_dir.glob("checkpoints/eval_val_*.json")).read_text())
    assert report["top1"] == pytest.approx(max(accs), abs=1e-6), evaluated.output


def test_a_bad_table_on_the_cli_is_one_paragraph_and_exit_2(tmp_path):
    result = cli(
        "athanor.train",
        "data=table",
        "data.path=houses.csv",
        "data.target=price",
        cwd=tmp_path,
        expect=2,
    )
    assert "data.path=houses.csv does not exist" in result.stderr
    assert "Traceback" not in result.output


def test_regression_on_a_parquet_table_through_the_cli(tmp_path):
    pytest.importorskip("pyarrow")
    houses().to_parquet(tmp_path / "houses.parquet")
    data = ("data=table", "data.path=houses.parquet", "data.target=price", "data.drop=[expensive]")
    run = cli(
        "athanor.train", *data, "task=regression", "loss=mse", "trainer.epochs=8",
        "logger.progress=plain", cwd=tmp_path,
    )  # fmt: skip
    mae = [m["val/mae"] for m in run.metrics() if "val/mae" in m]
    assert mae[-1] < mae[0] / 2 and mae[-1] < 15, mae  # in the price's own units (std ~90)
