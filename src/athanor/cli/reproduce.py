"""`athanor reproduce <run> [--steps N] [--atol X]`: the run again, into ``<run>.reproduce-N``,
with its own config, then compared with it (compare/reproduce.py).

The re-run is an ordinary `train` process started with the run's own command-line overrides
plus, for every key where today's composition of them differs from the run's saved
config.yaml, that key's saved value (``++key=value``, ``~key``): the files of conf/ may have
changed since, the run's config has not. It runs in the folder the run ran in (its project
conf/ and relative data paths), and a DDP run launches its workers as it did.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from athanor.compare.runs import Run
from athanor.config.flatten import flatten
from athanor.record.folder import read_yaml

# overrides of the original command line a single re-run leaves out: its folder, a resume (the
# re-run starts from scratch) and the sweep machinery (a sweep job is re-run as one run)
DROPPED = ("hydra.", "hydra/", "hparams_search=", "resume=")


def hydra_value(value: Any) -> str:
    """``value`` in Hydra's override grammar (strings quoted, so any text survives)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def saved_overrides(run: Run) -> list[str]:
    """The run's own command-line overrides (.hydra/overrides.yaml), less DROPPED."""
    overrides = read_yaml(run.path / ".hydra" / "overrides.yaml")
    return [o for o in overrides or [] if not o.lstrip("+~").startswith(DROPPED)]


def pinning_overrides(saved: dict[str, Any], composed: dict[str, Any]) -> list[str]:
    """Overrides that turn ``composed`` into ``saved`` (flattened keys; lists whole)."""
    fs, fc = flatten(saved), flatten(composed)
    pins = [f"++{k}={hydra_value(v)}" for k, v in fs.items() if k not in fc or fc[k] != v]
    return pins + [f"~{k}" for k in fc if k not in fs and k.split(".")[0] in saved]


@contextlib.contextmanager
def working_folder(path: Path) -> Iterator[None]:
    here = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(here)


def next_folder(run: Path) -> Path:
    """``<run>.reproduce-1``, or the first free ``-N``."""
    n = 1
    while (candidate := run.with_name(f"{run.name}.reproduce-{n}")).exists():
        n += 1
    return candidate


def rerun_command(run: Run, target: Path, steps: int | None) -> list[str]:
    """The `train` command line that re-runs ``run`` into ``target``."""
    from athanor.cli.api import compose

    overrides = saved_overrides(run)
    pins = pinning_overrides(
        {k: v for k, v in run.config.items() if k != "resume"}, compose(overrides)
    )
    stop = [f"++trainer.stop_at_step={steps}"] if steps else []
    folder = f"hydra.run.dir={hydra_value(str(target))}"
    return [sys.executable, "-m", "athanor.train", *overrides, *pins, *stop, folder]


def run_folder_of(run: Run) -> Path:
    """Where the run ran (its project conf/ and relative paths), else here."""
    cwd = Path(run.summary.get("cwd") or ".")
    return cwd if cwd.is_dir() else Path.cwd()


def rerun_threads(run: Run) -> dict[str, str]:
    """The run's own intra-op thread count, for the re-run's environment: how a CPU splits a
    sum across threads changes its last bits (a sweep job ran with its slot's threads, which
    this shell may not have)."""
    threads = (run.rerun.get("device") or {}).get("threads")
    if not isinstance(threads, int) or threads < 1:
        return {}
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def rerun(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> int:
    """Run the re-run (its output passes through) with ``env`` added; its exit status."""
    return subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}).returncode
