"""What lets a run reproduce itself: git commit and dirty flag, package versions, command line,
host, and the SLURM job it ran in (id, array index, restart count)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any


def git_info(cwd: Path | None = None) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("athanor", "torch", "torchvision", "hydra-core", "omegaconf", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def slurm_job(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The SLURM job this process runs in (None outside SLURM): ``job_id`` as squeue and
    scontrol name it (``<array job>_<index>`` in an array), the array index, and how many times
    SLURM started it again (``restart_count``: 1 after one requeue)."""
    env = os.environ if environ is None else environ
    if "SLURM_JOB_ID" not in env:
        return None
    array_job, index = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    return {
        "job_id": f"{array_job}_{index}" if array_job and index else env["SLURM_JOB_ID"],
        "raw_job_id": env["SLURM_JOB_ID"],
        "array_index": None if index is None else int(index),
        "restart_count": int(env.get("SLURM_RESTART_COUNT", 0)),
        "node": env.get("SLURMD_NODENAME"),
    }


def describe_slurm_job(info: Mapping[str, Any]) -> str:
    """One log line's worth: ``SLURM job 12_0 (array index 0), restart 1 on node01``."""
    text = f"SLURM job {info['job_id']}"
    if info.get("array_index") is not None:
        text += f" (array index {info['array_index']})"
    text += f", restart {info['restart_count']}"
    return text + (f" on {info['node']}" if info.get("node") else "")


def provenance() -> dict[str, Any]:
    return {
        "git": git_info(Path(__file__).resolve().parent),
        "versions": package_versions(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "host": platform.node(),
        # the GPUs this job was given (a sweep's pool launcher sets it per job); None: all
        "devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm": slurm_job(),  # None outside SLURM; a requeued job's restart_count goes up
    }
