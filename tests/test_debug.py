"""Debug aids through the real CLI: debug=fast, debug=overfit, and the in-process build switches
(channels_last, deterministic) on real components."""

from __future__ import annotations

import torch

from conftest import compose


def test_debug_fast_runs_one_batch_each_and_writes_no_checkpoints(train):
    result = train("debug=fast", "logger.progress=plain")
    summary = result.summary()
    assert summary["status"] == "completed" and summary["steps"] == 1
    assert len(result.metrics()) == 1
    checkpoints = result.run_dir / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())
    assert not (result.run_dir / "tb").exists()
    trainer = compose("debug=fast")["trainer"]
    assert trainer["limit_train_batches"] == 1 and trainer["limit_val_batches"] == 1


def test_debug_overfit_reaches_full_training_accuracy_on_digits(train):
    result = train("debug=overfit", "logger.progress=plain", "logger.tensorboard=false")
    assert "overfit check: reached" in result.output, result.output[-2000:]
    assert "augment" not in result.output.split("overfit check")[-1].lower()
    summary = result.summary()
    assert summary["steps"] == 200  # 100 epochs x 2 fixed batches


def _built(tmp_path, *overrides: str):
    from athanor.config.settings import run_settings
    from athanor.distributed import Dist
    from athanor.engine.parts import build_parts

    config = compose(
        "data=fake",
        "data.num_train=32",
        "data.num_val=16",
        "data.image_size=8",
        "data.batch_size=16",
        "model=simple_cnn",
        "model.width=4",
        *overrides,
    )
    return build_parts(config, run_settings(config), Dist(), torch.device("cpu"))


def test_channels_last_converts_weights_and_inputs(tmp_path):
    job = _built(tmp_path, "trainer.channels_last=true")
    conv = next(m for m in job.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    conv.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    batch = next(iter(job.loaders.train.epoch(0)))
    job.stepper.step([batch], 0)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    assert not batch.inputs.is_contiguous(memory_format=torch.channels_last)


def test_deterministic_switches_torch_to_deterministic_algorithms(tmp_path):
    try:
        _built(tmp_path, "trainer.deterministic=true")
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)


def test_cudnn_benchmark_only_on_cuda_when_not_deterministic():
    from athanor.seeding import set_determinism

    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        set_determinism(False, torch.device("cpu"))
        assert not torch.backends.cudnn.benchmark
        set_determinism(False, torch.device("cuda"))  # only sets the flag: no GPU needed
        assert torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = before
