"""`athanor export --format state_dict|safetensors|onnx|torch_export`: each format is written
from a real run, loaded back the way a user would (torch.load, safetensors, onnxruntime,
torch.export.load) and gives the checkpoint's outputs on validation data."""

from __future__ import annotations

import re

import pytest
import torch

from athanor.errors import ConfigError
from conftest import cli


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One short digits run (simple_cnn: conv, batch norm, pooling in the exported graph)."""
    where = tmp_path_factory.mktemp("export")
    result = cli(
        "athanor.train",
        "model=simple_cnn",
        "model.width=8",
        "trainer.epochs=1",
        "logger.progress=plain",
        cwd=where,
    )
    return result.run_dir


def _digits_batch(n: int = 16) -> torch.Tensor:
    """Validation-like inputs: digits pixels normalized with the data set's statistics."""
    from athanor.engine.build import build_data
    from conftest import compose

    bundle, _ = build_data(compose("data=digits"))
    x = bundle.val.images[:n].float() / 255.0
    return (x - bundle.mean[0]) / bundle.std[0]


def _checked(output: str) -> float:
    found = re.search(
        r"max abs difference (\S+) on a validation batch of shape \[64, 1, 8, 8\]", output
    )
    assert found, output
    return float(found.group(1))


def _reference(run, x: torch.Tensor) -> torch.Tensor:
    from athanor.models import MODELS

    model = MODELS.build(
        {"name": "simple_cnn", "width": 8}, num_classes=10, in_channels=1, image_size=8
    )
    model.load_state_dict(
        torch.load(run / "checkpoints" / "best.pt", weights_only=True)["state"]["model"]
    )
    return model.eval()(x)


@pytest.mark.parametrize(
    ("args", "fmt"),
    [
        (["model.pt"], "state_dict"),
        (["model.safetensors"], "safetensors"),
        (["model.onnx", "--format", "onnx"], "onnx"),
        (["model.pt2"], "torch_export"),
    ],
)
def test_each_format_is_written_checked_and_loads_as_users_load_it(run, tmp_path, args, fmt):
    result = cli("athanor", "export", str(run), *args, cwd=tmp_path)
    assert f": {fmt}, " in result.stdout
    assert _checked(result.stdout) < 1.0e-4
    out, x = tmp_path / args[0], _digits_batch()
    expected = _reference(run, x)
    if fmt == "onnx":
        onnxruntime = pytest.importorskip("onnxruntime")
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])  # another batch size
    elif fmt == "torch_export":
        got = torch.export.load(str(out)).module()(x)
    else:
        from athanor.models import MODELS

        if fmt == "safetensors":
            from safetensors.torch import load_file

            weights = load_file(str(out))
        else:
            weights = torch.load(out, weights_only=True)
        model = MODELS.build(
            {"name": "simple_cnn", "width": 8}, num_classes=10, in_channels=1, image_size=8
        )
        model.load_state_dict(weights)
        got = model.eval()(x)
    assert torch.allclose(got, expected, atol=1.0e-4), (got - expected).abs().max()


def test_ema_weights_export_and_differ_from_the_model(tmp_path):
    # mlp: engine/ema.py cannot average BatchNorm's integer step counter (simple_cnn + EMA fails)
    cli("athanor.train", "trainer.epochs=1", "trainer.ema.decay=0.9", cwd=tmp_path)
    run = next((tmp_path / "outputs").glob("*/*_mlp_digits"))
    cli("athanor", "export", str(run), "model.pt", cwd=tmp_path)
    cli("athanor", "export", str(run), "ema.pt", "--ema", cwd=tmp_path)
    model, ema = (torch.load(tmp_path / n, weights_only=True) for n in ("model.pt", "ema.pt"))
    assert model.keys() == ema.keys()
    assert any(not torch.equal(model[k], ema[k]) for k in model)


def test_an_export_that_does_not_reproduce_the_outputs_is_refused(run, tmp_path, monkeypatch):
    from athanor.offline import export as export_module

    real_load = torch.load

    def corrupted(f, *args, **kwargs):  # the exported file reads back as other weights
        state = real_load(f, *args, **kwargs)
        if str(f).endswith("bad.pt"):
            state = {k: v + 0.1 if v.is_floating_point() else v for k, v in state.items()}
        return state

    monkeypatch.setattr(export_module.torch, "load", corrupted)
    with pytest.raises(ConfigError, match="does not give the checkpoint's outputs"):
        export_module.export(str(run / "checkpoints" / "last.pt"), tmp_path / "bad.pt")


def test_bad_checkpoint_and_format_are_one_paragraph(tmp_path):
    result = cli("athanor", "export", "nowhere", "m.pt", cwd=tmp_path, expect=2)
    assert "neither a checkpoint file nor a run folder" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli(
        "athanor", "export", "nowhere", "m.pt", "--format", "tflite", cwd=tmp_path, expect=2
    )
    assert "invalid choice: 'tflite'" in result.stderr
