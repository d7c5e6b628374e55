"""Exact resume: a run SIGKILLed at random moments (mid-epoch, mid-save, mid-validation) and
continued with `resume=auto` ends bitwise identical to the run that was never stopped."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from athanor.record.folder import RunDir
from conftest import cli
from test_train_cli import read_scalars

pytestmark = pytest.mark.slow

# tiny but real: dropout (global RNG), crop/flip + mixup (per-batch generators), EMA, mid-epoch
# checkpoints
BASE = (
    "data=fake",
    "data.num_train=256",
    "data.num_val=64",
    "data.batch_size=16",
    "model=mlp",
    "model.hidden=[16]",
    "model.dropout=0.1",
    "trainer.epochs=3",
    "trainer.log_every=1",
    "trainer.deterministic=true",
    "trainer.ema.decay=0.9",
    "augment=cifar",  # random crop + flip, batched on the device
    "augment.mixup_alpha=0.2",
    "checkpoint.every_steps=3",
    "checkpoint.keep_steps=2",
    "logger.progress=plain",
    "logger.image_grid=false",
    "logger.plots=false",
    "seed=3",
    "hydra.run.dir=run",
)
TOTAL_STEPS = 3 * 256 // 16
# (overrides, number of kills)
VARIANTS = {
    "memory": (("data.loader=memory",), 3),
    "dataloader": (("data.loader=torch", "data.num_workers=0"), 2),
}


def newest_step(checkpoints: Path) -> int:
    steps = [int(p.stem.split("_")[1]) for p in checkpoints.glob("step_*.pt")]
    return max(steps, default=0)


def run_and_kill(cwd: Path, overrides: tuple[str, ...], after_step: int, delay: float) -> bool:
    """Start the run, SIGKILL it ``delay`` seconds after it wrote a checkpoint of ``after_step``
    or later. Returns whether it was still running when killed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "athanor.train", *overrides, "resume=auto"],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoints = cwd / "run" / "checkpoints"
    # newer than any already there: the process killed before it may have got past after_step
    wanted = max(after_step, newest_step(checkpoints) + 1)
    try:
        while newest_step(checkpoints) < wanted and proc.poll() is None:
            time.sleep(0.002)
        time.sleep(delay)
        alive = proc.poll() is None
        proc.kill()
    finally:
        proc.wait(timeout=60)
    return alive


def assert_same_tensors(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys differ"
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_sigkill_at_random_moments_then_resume_auto_is_bitwise_identical(tmp_path, variant):
    extra, kills = VARIANTS[variant]
    overrides = (*BASE, *extra)
    ref_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    ref_dir.mkdir()
    killed_dir.mkdir()
    cli("athanor.train", *overrides, cwd=ref_dir)

    rng = random.Random(f"kill-points-{variant}")
    # distinct checkpoint steps: each kill waits for a checkpoint the resumed process wrote
    kill_steps = sorted(rng.sample(range(3, TOTAL_STEPS - 9, 3), kills))
    for step in kill_steps:
        assert run_and_kill(killed_dir, overrides, step, rng.uniform(0.0, 0.03)), (
            f"the run ended before the kill after step {step}: the test lost its point"
        )
        assert newest_step(killed_dir / "run" / "checkpoints") < TOTAL_STEPS
    cli("athanor.train", *overrides, "resume=auto", cwd=killed_dir)

    ref_run, run = ref_dir / "run", killed_dir / "run"
    ref = torch.load(ref_run / "checkpoints" / "last.pt", weights_only=True)
    got = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    ref, got = ref["state"], got["state"]
    assert got["progress"]["step"] == ref["progress"]["step"] == TOTAL_STEPS
    assert list(got) == list(ref)
    for key in set(ref) - {"metrics_log", "rng"}:  # every part of the train state
        assert_same_tensors(ref[key], got[key], key)
    ref_log, got_log = ref["metrics_log"], got["metrics_log"]
    assert got_log["monitor"] == ref_log["monitor"]
    assert without_time([got_log["best"], got_log["final"]]) == without_time(
        [ref_log["best"], ref_log["final"]]
    )

    # same metrics, each validation exactly once
    got_metrics, ref_metrics = RunDir(run).read_metrics(), RunDir(ref_run).read_metrics()
    assert len(got_metrics) == len(ref_metrics)
    for a, b in zip(without_time(ref_metrics), without_time(got_metrics), strict=True):
        assert a == b, {
            k: (a.get(k), b.get(k)) for k in a.keys() | b.keys() if a.get(k) != b.get(k)
        }
    # TensorBoard: every training step exactly once, with the uninterrupted run's values
    ref_tb, tb = read_scalars(ref_run / "tb"), read_scalars(run / "tb")
    steps = [e.step for e in tb["train/loss"]]
    assert steps == list(range(1, TOTAL_STEPS + 1))
    assert [e.value for e in tb["train/loss"]] == [e.value for e in ref_tb["train/loss"]]
    assert [e.step for e in tb["val/acc"]] == [e.step for e in ref_tb["val/acc"]]

    # the first start's config stays in .hydra/, each requeue's goes to .hydra/resume-<time>/
    assert (run / ".hydra" / "config.yaml").is_file() and list((run / ".hydra").glob("resume-*"))
    summary, ref_summary = RunDir(run).read_summary(), RunDir(ref_run).read_summary()
    assert summary["status"] == "completed" and summary["steps"] == TOTAL_STEPS
    assert len(summary["resumes"]) == len(kill_steps)
    resumed_at = [r["step"] for r in summary["resumes"]]
    assert resumed_at == sorted(resumed_at) and resumed_at[0] >= kill_steps[0]
    assert without_time([summary["best"], summary["final"]]) == without_time(
        [ref_summary["best"], ref_summary["final"]]
    )
