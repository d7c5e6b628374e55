"""The Hydra callback that claims the run folder (listed in conf/train.yaml ``hydra.callbacks``):
``on_run_start`` runs after composition and before Hydra's job writes ``.hydra/`` or the log, so
a refused start leaves the folder as it was. Choosing and claiming are cli/resolvers.py's; this
module is only imported by Hydra (its Callback base is not cheap to import)."""

from __future__ import annotations

import atexit
import contextlib
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from athanor.cli.outcome import report
from athanor.cli.resolvers import _rank, claim_run_folder, claim_sweep_folder
from athanor.errors import EXIT_FAILED, EXIT_USER_ERROR, ConfigError
from athanor.record.lock import RunLock


def _literal(path: Path) -> str:
    """``path`` as a config value OmegaConf does not interpolate (a name may hold '${')."""
    return str(path).replace("${", "\\${")


def _override_value(path: Path) -> str:
    """``path`` as a quoted Hydra override value (a name may hold ',' or '=')."""
    return "'" + _literal(path).replace("'", "\\'") + "'"


@contextlib.contextmanager
def _ends_on_error() -> Iterator[None]:
    """Hydra's callbacks turn an exception into a warning and go on, which would start the run
    in an unclaimed folder: a refusal ends the command here (exit 2), a bug with its traceback."""
    try:
        yield
    except ConfigError as err:
        report("Config error", str(err))
        raise SystemExit(EXIT_USER_ERROR) from None
    except Exception:
        traceback.print_exc()
        raise SystemExit(EXIT_FAILED) from None


def _refuse_what_a_resume_cannot_change(config: Any) -> None:
    """A change a resume may not take (record/resume.py) ends the command before the claim
    takes the lock and Hydra writes ``.hydra/resume-*/`` and log lines: the folder stays as it
    was."""
    if not config.get("resume") or config.get("dry_run") or _rank() != 0:
        return
    from athanor.cli.compose import job_config
    from athanor.cli.resume_config import refuse_unresumable_changes

    overrides = list(config.hydra.overrides.task)
    refuse_unresumable_changes(job_config(config), Path(str(config.hydra.run.dir)), overrides)


class ClaimRunFolder(Callback):
    """Hydra callback (conf/train.yaml ``hydra.callbacks``): claim the folder before the job.
    A sweep's jobs, each in its own new folder of the claimed sweep folder, hold that folder's
    lock while they run (a launcher that runs them in other processes composes them there)."""

    def __init__(self) -> None:
        self.job_lock: RunLock | None = None

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        from omegaconf import open_dict, read_write

        with _ends_on_error():
            _refuse_what_a_resume_cannot_change(config)
            claim = claim_run_folder(config)
        with read_write(config), open_dict(config):
            config.hydra.run.dir = _literal(claim.folder)
            config.hydra.output_subdir = claim.hydra_subdir

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from omegaconf import open_dict, read_write

        with _ends_on_error():
            folder = claim_sweep_folder(config)
        with read_write(config), open_dict(config):
            config.hydra.sweep.dir = _literal(folder)
            # each job's config is composed again from these overrides (load_sweep_config)
            config.hydra.overrides.hydra.append(f"hydra.sweep.dir={_override_value(folder)}")

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN or _rank() != 0:
            return  # a run's lock was taken in on_run_start
        with _ends_on_error():
            self.job_lock = RunLock.acquire(Path(config.hydra.runtime.output_dir))
        atexit.register(self.job_lock.release)  # a job that ends the sweep (Ctrl-C)

    def on_job_end(self, config: Any, **kwargs: Any) -> None:
        if self.job_lock is not None:
            self.job_lock.release()
            self.job_lock = None
