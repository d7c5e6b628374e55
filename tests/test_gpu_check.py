"""scripts/gpu_check.py --cpu-smoke: every GPU path's code runs on CPU, the table and the JSON
come out, and a failing path makes the script exit 1 with the failure in its row."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_script

sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check  # noqa: E402


@pytest.mark.slow
def test_cpu_smoke_runs_every_path(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    proc = run_script("gpu_check.py", "--cpu-smoke", "--out", str(out), cwd=tmp_path, timeout=1500)
    record = json.loads(out.read_text())
    assert record["mode"] == "cpu-smoke" and record["processes"] == 2
    assert [r["path"] for r in record["results"]] == list(gpu_check.PATHS)
    for row in record["results"]:
        assert row["ok"] and row["peak_mb"] > 50, row  # RSS of a process that imported torch
        assert f"| {row['path']}" in proc.stdout
    fast = next(r for r in record["results"] if r["path"].startswith("cifar10_fast"))
    assert fast["figures"]["athanor_images_s"] > 0 and fast["figures"]["hand_loop_images_s"] > 0
    ddp = next(r for r in record["results"] if r["path"] == "ddp")
    assert "2 processes (gloo)" in ddp["detail"]


def test_a_failing_path_fails_the_check(tmp_path: Path, monkeypatch) -> None:
    """A real run that fails (a config error, exit 2): its row says so and the exit code is 1."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src"))
    broken = gpu_check.short_run("broken", "trainer.epochs=0")
    monkeypatch.setattr(gpu_check, "PATHS", {"broken": broken, "bf16": gpu_check.PATHS["amp bf16"]})
    out = tmp_path / "check.json"
    assert gpu_check.main(["--cpu-smoke", "--out", str(out), "--paths", "broken"]) == 1
    (row,) = json.loads(out.read_text())["results"]
    assert row["path"] == "broken" and not row["ok"]
    assert "exit 2" in row["detail"] and "trainer.epochs=0" in row["detail"]


def test_ddp_and_fsdp_on_one_gpu_are_skipped_not_ok(tmp_path: Path, monkeypatch, capsys) -> None:
    """With one GPU, nproc_per_node=1 starts no process group: the rows say they were skipped
    (not a green "ok" for NCCL that never ran), and a skip does not fail the check."""
    import dataclasses

    monkeypatch.setattr(gpu_check, "CPU_SMOKE", dataclasses.replace(gpu_check.CPU_SMOKE, gpus=1))
    out = tmp_path / "check.json"
    assert gpu_check.main(["--cpu-smoke", "--out", str(out), "--paths", "ddp,fsdp"]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [(r["path"], r["skipped"]) for r in rows] == [("ddp", True), ("fsdp", True)]
    assert all(r["detail"] == "skipped: needs 2 GPUs or more; 1 visible" for r in rows)
    assert "| ddp  | skipped |" in capsys.readouterr().out
