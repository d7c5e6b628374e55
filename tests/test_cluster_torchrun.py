"""Two nodes on one machine: two `torchrun` agents (`--nnodes=2`, c10d rendezvous on
127.0.0.1, one worker each, gloo) run one job into one run folder on the shared file system. One
node is killed mid-run (its agent and its worker, SIGKILL): the other ends with one paragraph,
and the same command with `resume=auto` on both nodes continues to the weights of the
uninterrupted one-process run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import free_port
from test_ddp import ARGS, run_env, single, weights  # noqa: F401 - `single` is a fixture

pytestmark = pytest.mark.slow

# test-only: the worker of rank 1, at its 8th optimizer step, once, says its node's PIDs (its
# agent's and its own) and waits to be killed with its node
NODE_DIES = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    from athanor.engine import step

    _step = step.Stepper.step
    FLAG = Path(os.environ["ATHANOR_TEST_NODE_FLAG"])

    def dying_step(self, micro, n, **kwargs):
        if os.environ.get("RANK") == "1" and n == 7 and not FLAG.exists():
            FLAG.write_text(f"{os.getppid()} {os.getpid()}")
            time.sleep(600)
        return _step(self, micro, n, **kwargs)

    step.Stepper.step = dying_step
    """
)


def start_node(cwd: Path, env: dict, port: int, name: str, *overrides: str) -> subprocess.Popen:
    """One node's torchrun agent (one worker), output in ``<name>.txt``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes=2",
            "--nproc_per_node=1",
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint=127.0.0.1:{port}",
            f"--rdzv_id=two-nodes-{port}",
            "-m",
            "athanor.train",
            *ARGS,
            "hydra.run.dir=run",
            "resume=auto",
            "checkpoint.every_steps=5",
            *overrides,
        ],
        cwd=cwd,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=(cwd / f"{name}.txt").open("w"),
        stderr=subprocess.STDOUT,
    )


def test_two_nodes_write_one_run_and_resume_after_a_node_dies(single, tmp_path):  # noqa: F811
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(NODE_DIES)
    flag = tmp_path / "node-dies"
    env = {**run_env(tmp_path, inject), "ATHANOR_TEST_NODE_FLAG": str(flag)}

    port = free_port()
    nodes = [start_node(tmp_path, env, port, f"node{i}") for i in range(2)]
    deadline = time.monotonic() + 240
    while not flag.exists():
        assert all(n.poll() is None for n in nodes), (tmp_path / "node0.txt").read_text()[-3000:]
        assert time.monotonic() < deadline, "rank 1 never reached its 8th step"
        time.sleep(0.1)
    time.sleep(0.2)  # the PIDs are written
    agent, worker = (int(pid) for pid in flag.read_text().split())
    killed_at = time.time()
    for pid in (agent, worker):  # the node goes away: its agent and its worker, at once
        os.kill(pid, signal.SIGKILL)
    survivors = [n for n in nodes if n.pid != agent]
    (survivor,) = survivors
    assert survivor.wait(timeout=120) != 0
    ended_after_s = time.time() - killed_at
    for n in nodes:
        n.wait(timeout=60)
    said = next(
        (tmp_path / f"node{i}.txt").read_text() for i, n in enumerate(nodes) if n is survivor
    )
    assert said.count("Stopped: rank 0 stopped because another process of the group failed") == 1
    assert ended_after_s < 60, f"the surviving node took {ended_after_s:.0f} s to end"
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["steps"] < 44

    # the same command again on both nodes (a new rendezvous): resume=auto continues the run
    port = free_port()
    nodes = [start_node(tmp_path, env, port, f"again{i}") for i in range(2)]
    for i, n in enumerate(nodes):
        assert n.wait(timeout=300) == 0, (tmp_path / f"again{i}.txt").read_text()[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 44
    (resumed,) = summary["resumes"]
    assert resumed["step"] == 5  # the last checkpoint before the node died
    assert [p.name for p in (tmp_path / "outputs").glob("*/*")] == []  # one folder: run/
    a, b = weights(single.run_dir), weights(run)
    for key in a:
        assert a[key].allclose(b[key], rtol=1e-4, atol=1e-6), key
