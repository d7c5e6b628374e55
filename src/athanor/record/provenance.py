"""What lets a run reproduce itself: git commit and dirty flag, package versions, command line,
host."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
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


def provenance() -> dict[str, Any]:
    return {
        "git": git_info(Path(__file__).resolve().parent),
        "versions": package_versions(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "host": platform.node(),
        # the GPUs this job was given (a sweep's pool launcher sets it per job); None: all
        "devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
