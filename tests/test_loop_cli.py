"""The loop's switches through the real `train` CLI: what lands in TensorBoard, the run folder,
the checkpoints and summary.json, and how runs stop."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from conftest import FAST, cli

QUIET = ("logger.tensorboard=false", "logger.plots=false", "logger.image_grid=false")


def events(tb_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def insight_run(tmp_path_factory):
    """Accumulation, clipping, EMA and every insight switch on, in one short digits run."""
    cwd = tmp_path_factory.mktemp("insight")
    return cli(
        "athanor.train",
        *FAST,
        "trainer.epochs=2",
        "trainer.limit_train_batches=6",
        "trainer.accumulate=2",  # 3 optimizer steps per epoch
        "trainer.max_steps=5",
        "trainer.grad_clip=0.5",
        "trainer.ema.decay=0.9",
        "checkpoint.monitor=val_ema/acc",
        "logger.grad_stats_every=2",
        "logger.histograms_every=3",
        cwd=cwd,
    )


def test_tensorboard_has_every_insight_tag(insight_run):
    acc = events(insight_run.run_dir / "tb")
    scalars = set(acc.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/acc",
        "train/grad_norm",
        "train/samples_per_s",
        "sys/peak_rss_gb",
        "lr",
        "lr/decay",  # one curve per parameter group (adamw: decay / no_decay)
        "lr/no_decay",
        "val/acc",
        "val/acc5",
        "val_ema/acc",
        "val_ema/loss",
        "val_class/0",
        "val_class/9",
        "grad_ratio/1.weight",
    ):
        assert tag in scalars, f"{tag} missing from {sorted(scalars)}"
    # per-layer ratios every 2 optimizer steps, histograms every 3
    assert [e.step for e in acc.Scalars("grad_ratio/1.weight")] == [2, 4]
    assert {"weights/1.weight", "grads/1.weight"} <= set(acc.Tags()["histograms"])
    assert [e.step for e in acc.Histograms("grads/1.weight")] == [3]
    images = set(acc.Tags()["images"])
    assert {"train/augmented_batch", "val/confusion_matrix"} <= images
    grid = acc.Images("train/augmented_batch")[0]
    assert grid.width > 8 and grid.height > 8  # many 8x8 digits, not one
    assert [e.step for e in acc.Images("val/confusion_matrix")] == [3, 5]
    assert all(e.value > 0 for e in acc.Scalars("train/grad_norm"))


def test_hparams_tab_holds_the_headline_keys_and_final_metrics(insight_run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    from athanor.observe.trackers.swept_keys import HEADLINE

    acc = events(insight_run.run_dir / "tb")
    content = acc.PluginTagToContent("hparams")
    session = [plugin_data_pb2.HParamsPluginData.FromString(v) for v in content.values()]
    hparams = {k for s in session for k in s.session_start_info.hparams}
    # nothing was swept: the headline keys only, not ~100 flattened ones (the run folder has all)
    assert hparams == set(HEADLINE) and "trainer.accumulate" not in hparams
    final = [e.value for e in acc.Scalars("hparam/val_ema/acc")]
    assert final == pytest.approx([insight_run.metrics()[-1]["val_ema/acc"]])


def test_accumulation_counts_optimizer_steps_for_schedule_and_logging(insight_run):
    summary = insight_run.summary()
    assert summary["steps"] == 5 and summary["stop_reason"] == "max_steps"
    lr = {e.step: e.value for e in events(insight_run.run_dir / "tb").Scalars("lr")}
    assert sorted(lr) == [1, 2, 3, 4, 5]  # one point per optimizer step (log_every=1)
    # cosine over 5 optimizer steps: reaches 0 at step 5, not at micro-batch 5 (step 3)
    assert lr[3] > 0 and lr[5] == pytest.approx(0.0, abs=1e-9)


def test_ema_is_checkpointed_and_best_follows_it(insight_run):
    ckpts = insight_run.run_dir / "checkpoints"
    last = torch.load(ckpts / "last.pt", weights_only=True)
    ema = last["state"]["ema"]
    assert int(ema["n_averaged"]) == 5
    assert any(not torch.equal(ema[f"module.{k}"], v) for k, v in last["state"]["model"].items())
    metrics = insight_run.metrics()
    best_value = last["state"]["metrics_log"]["monitor"]["best"]
    assert best_value == max(m["val_ema/acc"] for m in metrics)
    # best.pt (weights only) is the state of the first evaluation that reached the best EMA value
    best_step = next(m["step"] for m in metrics if m["val_ema/acc"] == best_value)
    best = torch.load(ckpts / "best.pt", weights_only=True)
    assert best["state"]["progress"]["step"] == best_step and "ema" in best["state"]


def test_metrics_are_exact_counts_with_per_class_accuracy(insight_run):
    record = insight_run.metrics()[-1]
    per_class = record["val/per_class_acc"]
    assert list(per_class) == [str(i) for i in range(10)]
    n_val = 359  # digits: 1797 * 0.2 held out
    assert round(record["val/acc"] * n_val, 6) == round(record["val/acc"] * n_val)
    assert record["val/acc"] <= record["val/acc5"] <= 1


def test_run_folder_has_valid_pngs_and_summary_has_model(insight_run):
    plots = insight_run.run_dir / "plots"
    for name in ("curves.png", "confusion_val.png"):
        with Image.open(plots / name) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 300
    model = insight_run.summary()["model"]
    assert model["params_total"] == insight_run.summary()["params"]["total"] > 0
    # mlp on 8x8 digits: Linear 64->256->128->10, 2 FLOPs per multiply-add
    assert model["flops_per_sample"] == 2 * (64 * 256 + 256 * 128 + 128 * 10)
    assert model["size_mb"] == pytest.approx(model["params_total"] * 4 / 2**20, rel=1e-3)
    assert [layer["type"] for layer in model["layers"]][:2] == ["Flatten", "Linear"]
    log = (insight_run.run_dir / "train.log").read_text()
    assert "kFLOPs per sample" in log and "module" in log
    assert log.count("epoch 1/2 done") == 1 and "epoch 2/2 done" in log
    # logger.progress=plain: a line per log_every optimizer steps with the live numbers
    assert "epoch 1 step 1/5: loss" in log and "samples/s" in log


def test_early_stopping_stops_after_patience(train):
    result = train(
        *FAST,
        *QUIET,
        "trainer.epochs=6",
        "trainer.limit_train_batches=2",
        "trainer.early_stopping.monitor=val/loss",
        "trainer.early_stopping.mode=min",
        "trainer.early_stopping.min_delta=100.0",  # no improvement is ever big enough
        "trainer.early_stopping.patience=1",
        "checkpoint.enabled=false",
    )
    summary = result.summary()
    assert summary["stop_reason"] == "early_stopping" and summary["status"] == "completed"
    assert summary["epochs"] == 3 and len(result.metrics()) == 3
    assert "Early stopping: val/loss has not improved for 2 validations" in result.output


def test_max_time_stops_cleanly_after_a_checkpoint(train):
    result = train(*FAST, *QUIET, "trainer.epochs=3", "trainer.max_time=1.0e-3")
    summary = result.summary()
    assert summary["stop_reason"] == "max_time" and summary["status"] == "completed"
    assert summary["steps"] == 1
    last = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)
    progress = last["state"]["progress"]
    assert progress["step"] == 1 and progress["stop_reason"] == "max_time"
    assert len(result.metrics()) == 1  # validated before stopping


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(train):
    # SGD with lr 1e30: step 1 is finite, step 2's activations overflow to inf -> NaN loss
    result = train(
        *FAST,
        *QUIET,
        "optim=sgd",
        "optim.lr=1.0e+30",
        "checkpoint.every_steps=1",
        expect=1,
    )
    assert "Training failed: The loss became NaN/Inf at optimizer step 2" in result.stderr
    assert "Traceback" not in result.output
    summary = result.summary()
    assert summary["status"] == "failed" and "step 2" in summary["error"]
    last = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["state"]["progress"]["step"] == 1
    assert all(torch.isfinite(t).all() for t in last["state"]["model"].values())


def test_detect_anomaly_names_the_backward_op(train):
    result = train(
        *FAST, *QUIET, "optim=sgd", "optim.lr=1.0e+30", "trainer.detect_anomaly=true", expect=1
    )
    assert "detect_anomaly found NaN in the backward pass at optimizer step 2" in result.stderr
    assert "Backward" in result.stderr  # torch names the function, e.g. 'AddmmBackward0'


def test_fp16_checkpoints_its_grad_scaler_and_warns_on_cpu_with_a_progress_bar(train):
    result = train(
        *QUIET,
        "trainer.epochs=1",
        "trainer.max_steps=2",
        "trainer.log_every=1",
        "trainer.precision=fp16",
        "logger.progress=bar",
    )
    assert "trainer.precision=fp16 on CPU" in result.output
    last = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)
    scaler = last["state"]["grad_scaler"]
    assert scaler["scale"] > 0 and "_growth_tracker" in scaler
    # tqdm on stderr with the live numbers; no plain per-step lines in the log
    assert "samples/s" in result.stderr and "epoch 1/1" in result.stderr
    assert "step 1/2:" not in (result.run_dir / "train.log").read_text()


@pytest.mark.slow
def test_compile_that_fails_for_real_falls_back_to_eager(train):
    # no working C++ compiler: inductor fails at the first step; the run must go on, eager
    env = {"CXX": "/nonexistent/g++", "CC": "/nonexistent/gcc"}
    result = train(*FAST, *QUIET, "trainer.max_steps=2", "trainer.compile=true", env=env)
    assert "torch.compile failed" in result.output and "falling back to eager" in result.output
    assert result.summary()["status"] == "completed" and result.summary()["steps"] == 2


def test_a_monitor_naming_no_metric_is_refused_before_training(train):
    result = train(*FAST, *QUIET, "trainer.early_stopping.monitor=val/acc1", expect=2)
    assert "val/acc1" in result.stderr and "val/loss, val/acc, val/acc5" in result.stderr
    assert "Traceback" not in result.output and "step 1/" not in result.output


def test_monitors_on_ema_metrics_need_ema():
    from athanor.errors import ConfigError
    from athanor.metrics.monitor import check_monitors

    check_monitors({"checkpoint.monitor": "val_ema/acc"}, 10, ema=True)
    with pytest.raises(ConfigError, match="needs trainer.ema.decay"):
        check_monitors({"checkpoint.monitor": "val_ema/acc"}, 10, ema=False)
    with pytest.raises(ConfigError, match="Valid: val/loss, val/acc.$"):
        check_monitors({"checkpoint.monitor": "val/acc5"}, 3, ema=False)
    check_monitors({"trainer.early_stopping.monitor": None}, 3, ema=False)
