"""The run folder: chosen by pure resolvers while Hydra composes, claimed once when the run starts.

Choosing (OmegaConf resolvers, no side effects):

- ``athanor_run_dir``: a new run's folder name (``outputs/<date>/<time>_<name>``), or the resumed
  run's own folder for ``resume=<folder or .pt>``.
- ``athanor_unique``: the sweep folder's name.
- ``athanor_hydra_subdir``: ``.hydra`` (``ClaimRunFolder`` makes it ``.hydra/resume-<time>`` for a
  resumed run, which keeps its original ``.hydra/``).

Claiming (``cli/claim.py``'s ``ClaimRunFolder``, a Hydra callback: ``on_run_start`` runs after composition and before
Hydra's job writes anything): ``claim_run_folder`` checks the folder (record/folder.py: another
run's record, file-system faults), creates a new one exclusively (two runs in the same second get
``..._1``) and takes its lock (record/lock.py), then writes the claimed folder into the config as
a literal. Non-zero ranks (Hydra's ${now:} differs between processes) and dry runs get a scratch
folder. A refusal is one paragraph, exit 2, and the folder is left as it was.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from athanor.record.folder import check_folder, claim_new, make_folder
from athanor.record.lock import RunLock
from athanor.record.names import safe_name
from athanor.record.scratch import scratch_dir
from athanor.sweep import slurm

RUN_DIR_RESOLVER = "${athanor_run_dir:"
SWEEP_DIR_RESOLVER = "${athanor_unique:"


def _rank() -> int:
    # SLURM_PROCID: a multi-task SLURM job, before run.py exports RANK from it
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def unique_name(path: str) -> str:
    """The sweep folder's name as composed (``claim_sweep_folder`` makes it unique)."""
    return path


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
    """The folder a run is meant for: the resumed run's, else ``default`` (claimed at start)."""
    folder = resumed_run_folder(resume)
    return str(folder) if folder is not None else default


def hydra_subdir(resume: str | None = None) -> str:
    """Where Hydra writes the composed config; a resume's own subfolder is set by the claim."""
    return ".hydra"


def slug(text: str, sweeper: str = "") -> str:
    """A sweep job's folder name from Hydra's override_dirname: file-name safe (no nested folders
    from paths). An Optuna trial's overrides (its sampled floats at full precision, every key of
    the search space) make no name to read: a trial is `<trial number>_<short hash>`, its full
    overrides being in the sweep's manifest and the job's own summary.json (`argv`)."""
    if sweeper.endswith("OptunaSweeper"):
        return hashlib.sha1(str(text).encode()).hexdigest()[:8]
    return "".join(c if c.isalnum() or c in "=,.-_+" else "_" for c in str(text))[:150] or "default"


@dataclass(frozen=True)
class Claim:
    """A claimed run folder: where the run writes, where Hydra puts its config, and the lock."""

    folder: Path
    hydra_subdir: str
    lock: RunLock | None


def _raw(node: Any, key: str) -> str:
    """A config value as written (an interpolation stays unresolved)."""
    from omegaconf import OmegaConf

    return str(OmegaConf.to_container(node, resolve=False).get(key, ""))


def claim_run_folder(cfg: Any) -> Claim:
    """Check and claim the folder of a run (``cfg``: the composed config with ``hydra``): the
    one act that creates the folder and takes its lock. Raises ConfigError on a refusal."""
    if _rank() != 0 or cfg.get("dry_run"):
        return Claim(Path(scratch_dir()), ".hydra", None)
    resume = cfg.get("resume")
    folder = Path(str(cfg.hydra.run.dir))
    new = resumed_run_folder(resume) is None and _raw(cfg.hydra.run, "dir").startswith(
        RUN_DIR_RESOLVER
    )
    if new:
        resuming = False
        folder = claim_new(folder)  # a new folder: the mkdir is the claim
    else:  # resume=<folder>, or a fixed hydra.run.dir that resume=auto continues (a requeue)
        resuming = resumed_run_folder(resume) is not None or (
            resume == "auto" and (folder / "checkpoints").is_dir()
        )
        # resume=auto in a fixed folder is that folder's own run, requeued (a sweep pool's job)
        check_folder(folder, resuming=resuming or resume == "auto")
        make_folder(folder)  # checked writable above
    try:
        lock = RunLock.acquire(folder)
    except BaseException:
        if new:
            folder.rmdir()
        raise
    atexit.register(lock.release)  # completed, failed or interrupted: the process ends here
    subdir = f".hydra/resume-{time.strftime('%Y%m%d-%H%M%S')}" if resuming else ".hydra"
    return Claim(folder, subdir, lock)


def claim_sweep_folder(cfg: Any) -> Path:
    """The sweep folder, created exclusively like a run folder (a fixed one is used as given)."""
    folder = Path(str(cfg.hydra.sweep.dir))
    if _rank() != 0:
        return Path(scratch_dir())
    if _raw(cfg.hydra.sweep, "dir").startswith(SWEEP_DIR_RESOLVER):
        return claim_new(folder, "sweep")
    check_folder(folder, resuming=True, kind="sweep")  # it holds runs, not one run's record
    make_folder(folder, "sweep")  # here, not in Hydra's sweeper, which would show a traceback
    return folder


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("athanor_run_dir", run_dir, replace=True, use_cache=True)
    OmegaConf.register_new_resolver("athanor_unique", unique_name, replace=True, use_cache=True)
    OmegaConf.register_new_resolver("athanor_hydra_subdir", hydra_subdir, replace=True)
    OmegaConf.register_new_resolver("athanor_slug", slug, replace=True)
    OmegaConf.register_new_resolver("athanor_name", safe_name, replace=True, use_cache=True)
    # hydra/launcher=slurm: SLURM's tasks and CPUs from what the job asks for
    OmegaConf.register_new_resolver("athanor_slurm_tasks", slurm.tasks_per_node, replace=True)
    OmegaConf.register_new_resolver("athanor_slurm_cpus", slurm.cpus_per_task, replace=True)
