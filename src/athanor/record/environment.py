"""What a re-run needs to know of the process that ran: the git commit and a bounded patch of
the uncommitted changes, package versions, the exact command line and folder, the host, the SLURM
job it ran in (id, array index, restart count), the device and its threads, the seed and the determinism switches.

``environment`` is what summary.json holds (small); the patch is a file beside it, named there.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

# the patch of uncommitted changes is cut here (a stray data file under git must not make every
# run folder huge); summary.json says when it was cut and how big it was
PATCH_LIMIT_BYTES = 1 << 20


def _git(cwd: Path | None, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
    ).stdout


def git_info(cwd: Path | None = None) -> dict[str, Any]:
    try:
        status = _git(cwd, "status", "--porcelain")
        return {"commit": _git(cwd, "rev-parse", "HEAD").strip(), "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def uncommitted_patch(cwd: Path | None = None) -> tuple[str, dict[str, Any]] | None:
    """(``git diff HEAD``, cut to PATCH_LIMIT_BYTES, with the untracked files named at its end;
    what summary.json says of it), or None outside git or when nothing is uncommitted."""
    try:
        diff = _git(cwd, "diff", "HEAD", "--binary")
        untracked = _git(cwd, "ls-files", "--others", "--exclude-standard").split()
    except (OSError, subprocess.SubprocessError):
        return None
    if not diff and not untracked:
        return None
    size = len(diff.encode())
    cut = size > PATCH_LIMIT_BYTES
    text = diff.encode()[:PATCH_LIMIT_BYTES].decode(errors="ignore") if cut else diff
    if cut:
        text += f"\n# athanor: patch cut at {PATCH_LIMIT_BYTES} of {size} bytes\n"
    if untracked:  # named, not copied: they may be data or outputs
        text += "".join(f"# untracked: {name}\n" for name in untracked)
    meta = {"bytes": size, "cut": cut, "untracked": len(untracked)}
    return text, {**meta, "sha256": hashlib.sha256(text.encode()).hexdigest()}


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


def code_folder() -> Path:
    """The folder of athanor's code: its git repository is the one whose commit is recorded."""
    return Path(__file__).resolve().parent


def environment() -> dict[str, Any]:
    """The process: code version, packages, command line (as a string and as the argv list a
    re-run replays), the folder it ran in, the host and the GPUs it was given."""
    return {
        "git": git_info(code_folder()),
        "versions": package_versions(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "argv": sys.argv[1:],
        "cwd": str(Path.cwd()),
        "host": platform.node(),
        # the GPUs this job was given (a sweep's pool launcher sets it per job); None: all
        "devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm": slurm_job(),  # None outside SLURM; a requeued job's restart_count goes up
    }


def device_info(device: torch.device, world_size: int) -> dict[str, Any]:
    """The device the run trained on, its name, the threads and the world size."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "type": device.type,
        "name": name or platform.machine(),
        "threads": torch.get_num_threads(),
        "world_size": world_size,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
    }


def determinism(seed: int, deterministic: bool) -> dict[str, Any]:
    """The seed and the switches that decide whether a re-run can be bitwise equal."""
    return {
        "seed": seed,
        "deterministic": deterministic,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
