"""distributed.strategy=fsdp with 2 gloo processes on CPU: the run ends with the ddp run's
weights, its checkpoints are DCP shard folders named by the step files, a split run resumes to
the straight run's weights and optimizer bit for bit, and evaluate, export and model.weights read
what it wrote. Crash leftovers of a sharded save are removed (no process needed for that)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from athanor.config.settings import CheckpointSettings
from athanor.record import shards
from athanor.record.checkpoints import Checkpointer
from conftest import cli

# digits: 22 optimizer steps per epoch of 64 on 2 ranks; model.blocks makes 3 FSDP units + root
ARGS = (
    "model=mlp",
    "model.blocks=[Linear]",
    "augment=none",
    "trainer.epochs=2",
    "trainer.log_every=5",
    "logger.progress=plain",
    "logger.plots=false",
    "checkpoint.every_steps=10",
    "checkpoint.keep_steps=10",
    "distributed.nproc_per_node=2",
)


def train(cwd: Path, *args: str, expect: int = 0):
    return cli("athanor.train", *ARGS, *args, cwd=cwd, expect=expect, timeout=300)


def plain_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state"]["model"]


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("fsdp")
    result = train(cwd, "distributed.strategy=fsdp")
    assert "fsdp: 2 ranks" in result.output and "3 x Linear + the root" in result.output
    return result.run_dir


@pytest.mark.slow
def test_fsdp_checkpoints_are_shard_folders_and_the_weights_are_ddps(fsdp_run, tmp_path):
    checkpoints = fsdp_run / "checkpoints"
    last = torch.load(checkpoints / "last.pt", weights_only=True)
    assert last["state"]["model"] == {"shards": "step_000000044.shards"}
    assert "optimizer" not in last["state"]  # in the shards with the model
    steps = sorted(p.stem for p in checkpoints.glob("step_*.pt"))
    assert steps == [f"step_{s:09d}" for s in (10, 20, 22, 30, 40, 44)]
    for step in steps:  # every step file names a complete folder; no temp folder is left
        assert (checkpoints / f"{step}.shards" / ".metadata").is_file()
        assert len(list((checkpoints / f"{step}.shards").glob("*.distcp"))) == 2  # one a rank
    assert not list(checkpoints.glob(".*"))
    # model.pt (end of run) and best.pt: plain tensors, the same as the shards joined
    final = plain_weights(checkpoints / "model.pt")
    joined = shards.read_part({"shards": str(checkpoints / "step_000000044.shards")}, "model")
    assert final.keys() == joined.keys() and all(torch.equal(final[k], joined[k]) for k in final)
    assert all(isinstance(v, torch.Tensor) for v in plain_weights(checkpoints / "best.pt").values())

    ddp = train(tmp_path, "distributed.strategy=ddp")
    reference = plain_weights(ddp.run_dir / "checkpoints" / "last.pt")
    assert reference.keys() == final.keys()
    for key in reference:
        assert torch.allclose(final[key], reference[key], rtol=1e-5, atol=1e-6), key
    summary = json.loads((fsdp_run / "summary.json").read_text())
    assert summary["best"]["val/acc"] == pytest.approx(ddp.summary()["best"]["val/acc"], abs=1e-9)


@pytest.mark.slow
def test_a_split_fsdp_run_resumes_to_the_straight_runs_weights_and_optimizer(fsdp_run, tmp_path):
    """A copy of the straight run cut back to its mid-epoch step 10, then resumed (in the copy,
    moved: the shards are found beside the step file): its end is the straight run's, bit for
    bit."""
    split = tmp_path / "split"
    shutil.copytree(fsdp_run, split)
    for later in (split / "checkpoints").glob("step_*"):
        if int(later.name[5:14]) > 10:
            shutil.rmtree(later) if later.is_dir() else later.unlink()
    cut = split / "checkpoints" / "step_000000010.pt"
    resumed = train(tmp_path, "distributed.strategy=fsdp", f"resume={cut}")
    assert f"resumed from {cut}: epoch 0, step 10" in resumed.output
    ends = [run / "checkpoints" / "step_000000044.shards" for run in (fsdp_run, split)]
    for key in ("model", "optimizer"):
        straight, cut_and_resumed = (shards.read_part({"shards": str(f)}, key) for f in ends)
        assert_equal(straight, cut_and_resumed, key)
    # negative control: the cut point itself is not the end
    start = shards.read_part({"shards": str(cut.with_suffix(".shards"))}, "model")
    end = plain_weights(split / "checkpoints" / "model.pt")
    assert not all(torch.equal(start[k], end[k]) for k in end)


def assert_equal(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_equal(a[key], b[key], f"{where}.{key}")
    else:
        assert a == b, where


@pytest.mark.slow
def test_evaluate_export_and_model_weights_read_what_fsdp_wrote(fsdp_run, tmp_path):
    checkpoints = fsdp_run / "checkpoints"
    final = json.loads((fsdp_run / "summary.json").read_text())["final"]
    result = cli("athanor.evaluate", f"ckpt={checkpoints / 'last.pt'}", cwd=tmp_path)
    (report,) = [json.loads(p.read_text()) for p in checkpoints.glob("eval_val_*.json")]
    assert report["top1"] == pytest.approx(final["val/acc"], abs=1e-9), result.stdout

    cli("athanor", "export", str(checkpoints / "last.pt"), "w.pt", cwd=tmp_path)
    exported = torch.load(tmp_path / "w.pt", weights_only=True)
    model = plain_weights(checkpoints / "model.pt")
    assert all(torch.equal(exported[k], model[k]) for k in model)

    fast = ("model=mlp", "trainer.max_steps=1", "trainer.epochs=1", "logger.progress=plain")
    started = cli("athanor.train", *fast, f"model.weights={checkpoints / 'model.pt'}", cwd=tmp_path)
    assert "model: loaded 6 tensors" in started.output
    refused = cli(
        "athanor.train", *fast, f"model.weights={checkpoints / 'last.pt'}", cwd=tmp_path, expect=2
    )
    assert "is a sharded checkpoint" in refused.stderr and "model.pt" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_killed_sharded_save_leaves_nothing_the_next_start_keeps(tmp_path):
    """Killed while the ranks wrote (a temp folder) or between the folder's rename and the step
    file (a folder no .pt names): the next Checkpointer removes both, and keeps a named one."""
    folder = tmp_path / "checkpoints"
    for name in (".step_000000030.shards.tmp", "step_000000020.shards", "step_000000010.shards"):
        (folder / name).mkdir(parents=True)
        (folder / name / "__0_0.distcp").write_bytes(b"x")
    (folder / "step_000000010.pt").write_bytes(b"x")
    Checkpointer(folder, CheckpointSettings())
    assert sorted(p.name for p in folder.iterdir()) == [
        "step_000000010.pt",
        "step_000000010.shards",
    ]


def test_a_batchnorm_model_trains_sharded_in_bf16_with_channels_last(tmp_path):
    """FSDP casts a unit's parameters to bf16 but not its buffers (BatchNorm's running
    statistics), and shards contiguous parameters only: both were crashes on the first step."""
    result = cli(
        "athanor.train",
        "model=simple_cnn",
        "model.width=8",
        "distributed.strategy=fsdp",
        "distributed.nproc_per_node=2",
        "trainer.precision=bf16",
        "trainer.channels_last=true",
        "trainer.max_steps=3",
        "logger.progress=plain",
        "logger.plots=false",
        cwd=tmp_path,
        timeout=300,
    )
    assert "parameters in torch.bfloat16" in result.output
    assert "BatchNorm layers in float32" in result.output
    assert "channels_last inputs, weights left contiguous" in result.output
    summary = result.summary()
    assert summary["status"] == "completed" and summary["steps"] == 3


def test_what_fsdp_cannot_shard_is_refused_before_any_work(tmp_path):
    for bad, says in (
        ("trainer.ema.decay=0.9", "trainer.ema.decay"),
        ("trainer.sync_bn=true", "sync_bn"),
        ("logger.grad_stats_every=2", "logger.grad_stats_every=2 works with"),
        ("logger.histograms_every=5", "logger.histograms_every=5 works with"),
    ):
        result = cli(
            "athanor.train", "model=mlp", "distributed.strategy=fsdp", bad, cwd=tmp_path, expect=2
        )
        assert says in result.stderr and "distributed.strategy" in result.stderr
        assert "Traceback" not in result.stderr
