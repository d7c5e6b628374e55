"""Run-folder naming for Hydra (registered as OmegaConf resolvers by the CLI).

- ``athanor_run_dir``: the folder of a new run, made unique atomically (two runs started in the
  same second get ``..._1``), a temp folder for dry runs and non-zero ranks, or the resumed run's
  own folder for ``resume=<folder or .pt>``.
- ``athanor_unique``: the sweep folder, unique like a run folder (a scratch folder on non-zero ranks).
- ``athanor_hydra_subdir``: ``.hydra`` normally; a resumed run keeps its original ``.hydra/`` and
  records the resume's config under ``.hydra/resume-<time>/``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from athanor.record.names import safe_name
from athanor.record.scratch import scratch_dir

_chosen: dict[str, str] = {}


def _rank() -> int:
    # SLURM_PROCID: a multi-task SLURM job, before run.py exports RANK from it
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def make_unique(path: str) -> str:
    """Create ``path`` (or ``path_1``, ``path_2``, ...) exclusively; memoized per process.
    Under torchrun only rank 0 creates it: Hydra's ${now:} differs between processes."""
    if path in _chosen:
        return _chosen[path]
    if _rank() != 0:
        _chosen[path] = scratch_dir()
        return _chosen[path]
    candidate, i = path, 0
    while True:
        try:
            Path(candidate).mkdir(parents=True, exist_ok=False)
            break
        except FileExistsError:
            i += 1
            candidate = f"{path}_{i}"
    _chosen[path] = candidate
    return candidate


def resumed_run_folder(resume: str | None) -> Path | None:
    """The run folder that ``resume=`` points at, when it is an existing folder or .pt file."""
    if not resume or resume == "auto":
        return None
    p = Path(resume)
    if p.is_file() and p.parent.name == "checkpoints":
        return p.parent.parent
    if p.is_dir() and (p / "checkpoints").is_dir():
        return p
    return None  # validated later with a clear message


def run_dir(default: str, dry_run: bool = False, resume: str | None = None) -> str:
    if "run_dir" in _chosen:
        return _chosen["run_dir"]
    if _rank() != 0 or dry_run:
        chosen = scratch_dir()
    elif (folder := resumed_run_folder(resume)) is not None:
        chosen = str(folder)
    else:
        chosen = make_unique(default)
    _chosen["run_dir"] = chosen
    return chosen


def _auto_resumes(root: Any) -> bool:
    """resume=auto into a fixed hydra.run.dir that already holds checkpoints (a requeued job)."""
    hydra = root.get("hydra") if root is not None else None
    if hydra is None or str(hydra.get("mode", "")).endswith("MULTIRUN"):
        return False  # (resolving run.dir in a sweep would create a stray folder)
    return (Path(str(hydra.run.dir)) / "checkpoints").is_dir()


def hydra_subdir(resume: str | None = None, *, _root_: Any = None) -> str:
    """``_root_`` (the whole config, passed by OmegaConf) tells where resume=auto will write."""
    if "hydra_subdir" not in _chosen:  # memoized: one name per process, whatever the second
        auto = resume == "auto" and _auto_resumes(_root_)
        resumed = auto or resumed_run_folder(resume) is not None
        _chosen["hydra_subdir"] = (
            f".hydra/resume-{time.strftime('%Y%m%d-%H%M%S')}" if resumed else ".hydra"
        )
    return _chosen["hydra_subdir"]


def slug(text: str) -> str:
    """A file-name-safe version of Hydra's override_dirname (no nested folders from paths)."""
    return "".join(c if c.isalnum() or c in "=,.-_+" else "_" for c in str(text))[:150] or "default"


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("athanor_run_dir", run_dir, replace=True, use_cache=True)
    OmegaConf.register_new_resolver("athanor_unique", make_unique, replace=True, use_cache=True)
    OmegaConf.register_new_resolver("athanor_hydra_subdir", hydra_subdir, replace=True)
    OmegaConf.register_new_resolver("athanor_slug", slug, replace=True)
    OmegaConf.register_new_resolver("athanor_name", safe_name, replace=True, use_cache=True)
