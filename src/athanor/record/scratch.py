"""Scratch folders: where a process writes what nobody keeps (non-zero ranks' and dry runs'
Hydra output), and their removal once the process is done."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

SCRATCH_PREFIX = "athanor-scratch-"


def scratch_dir() -> str:
    """Where Hydra may write on a process whose output nobody keeps (non-zero ranks, dry runs)."""
    return tempfile.mkdtemp(prefix=SCRATCH_PREFIX)


def _scratch_root(path: str | Path) -> Path | None:
    """The scratch folder that ``path`` is (or is inside: a sweep job's folder), or None."""
    tmp = Path(tempfile.gettempdir()).resolve()
    for p in (Path(path).resolve(), *Path(path).resolve().parents):
        if p.parent == tmp and p.name.startswith(SCRATCH_PREFIX):
            return p
    return None


def is_scratch(path: str | Path) -> bool:
    return _scratch_root(path) is not None


def remove_scratch(path: str | Path) -> None:
    """Delete a scratch folder once its process is done with it (real run folders are kept)."""
    root = _scratch_root(path)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)
