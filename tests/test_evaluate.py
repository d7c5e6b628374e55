"""The `evaluate` command and `athanor export`."""

from __future__ import annotations

import json

import pytest
import torch

from athanor.record.folder import RunDir
from conftest import cli
from test_checkpoint import TINY


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("evaluate")
    overrides = ("trainer.epochs=2", "trainer.ema.decay=0.9", "hydra.run.dir=run")
    cli("athanor.train", *TINY, *overrides, cwd=cwd)
    return cwd / "run"


def evaluate(*args: str, cwd, expect: int = 0):
    return cli("athanor.evaluate", *args, cwd=cwd, expect=expect)


def reports(folder) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("eval_val_*.json"))]


def test_evaluate_a_run_folder_matches_the_training_validation(run):
    result = evaluate(f"ckpt={run}", "data.batch_size=7", cwd=run.parent)
    for word in ("loss", "top-1", "top-5", "per class", "class_9"):
        assert word in result.stdout
    (report,) = reports(run / "checkpoints")
    best = RunDir(run).read_summary()["best"]
    assert report["checkpoint"].endswith("best.pt") and report["step"] == best["step"]
    # same numbers as the run's own validation, with another batch size
    assert report["top1"] == pytest.approx(best["val/acc"], abs=1e-9)
    assert report["loss"] == pytest.approx(best["val/loss"], rel=1e-5)
    assert report["data"]["batch_size"] == 7 and report["samples"] == 32
    assert len(report["per_class"]) == 10 and report["top5"] >= report["top1"]


def test_evaluate_a_ddp_saved_checkpoint_and_the_ema(run, tmp_path):
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    model = state["state"]["model"]
    state["state"]["model"] = {f"module.{k}": v for k, v in model.items()}
    torch.save(state, tmp_path / "ddp.pt")
    evaluate(f"ckpt={tmp_path / 'ddp.pt'}", cwd=tmp_path)
    evaluate(f"ckpt={tmp_path / 'ddp.pt'}", "weights=ema", cwd=tmp_path)
    by_weights = {r["weights"]: r for r in reports(tmp_path)}
    final = RunDir(run).read_metrics()[-1]
    assert by_weights["model"]["loss"] == pytest.approx(final["val/loss"], rel=1e-5)
    assert by_weights["ema"]["loss"] == pytest.approx(final["val_ema/loss"], rel=1e-5)


def test_evaluate_bad_input_is_a_config_error(run, tmp_path):
    result = evaluate(f"ckpt={tmp_path / 'nope'}", cwd=tmp_path, expect=2)
    assert "neither a checkpoint file nor a run folder" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    from athanor.cli.evaluate import evaluate_config
    from athanor.errors import ConfigError
    from athanor.offline.checkpoint_eval import evaluate_checkpoint

    with pytest.raises(ConfigError, match="Did you mean 'split'"):
        evaluate_config([f"ckpt={run}", "splt=test"])
    with pytest.raises(ConfigError, match="evaluate needs ckpt="):
        evaluate_config([])
    with pytest.raises(ConfigError, match="has no test split"):
        evaluate_checkpoint(evaluate_config([f"ckpt={run}", "split=test"]))


def test_export_writes_a_plain_state_dict(run, tmp_path):
    cli("athanor", "export", str(run), str(tmp_path / "weights.pt"), cwd=tmp_path)
    weights = torch.load(tmp_path / "weights.pt", weights_only=True)
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    best_model = best["state"]["model"]
    assert weights.keys() == best_model.keys()
    assert all(torch.equal(weights[k], best_model[k]) for k in weights)
    cli("athanor", "export", str(run / "checkpoints" / "last.pt"), "ema.pt", "--ema", cwd=tmp_path)
    ema = torch.load(tmp_path / "ema.pt", weights_only=True)
    assert ema.keys() == weights.keys()
