"""The Hydra side of athanor's sweeps: the pool launcher (``hydra/launcher=pool``) and the Optuna
sweeper (``hparams_search=...``), exposed to Hydra by ``hydra_plugins.athanor_sweeps``.

Hydra gives the job overrides; everything else (slots, the job pool, the manifest, the study)
lives in athanor.sweep. Each job runs ``python -m athanor.train <overrides>
hydra.run.dir=<its folder> resume=auto``: its own process, its own fixed folder, so a restarted
sweep resumes it from its last checkpoint.

The pool is every sweep's launcher (conf/train.yaml); ``hydra/launcher=basic`` is Hydra's plain
one (jobs one after another in this process). The sweep folder is locked for the sweep's life, so
a second sweep into it is refused up front; a stop signal ends the sweep with exit 130 once its
running jobs have checkpointed.
"""

from __future__ import annotations

import atexit
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf, open_dict

from athanor.cli.outcome import report
from athanor.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USER_ERROR, ConfigError
from athanor.process import collector
from athanor.process.signals import signal_name
from athanor.record.folder import RunDir
from athanor.record.lock import RunLock
from athanor.sweep.manifest import FAILED, Entry, Manifest, finished, numbered_aside
from athanor.sweep.pool import Job, Pool, Watch, wait_for_previous_process
from athanor.sweep.slots import PoolOptions
from athanor.sweep.table import failed_message, interrupted_message, sweep_table

log = logging.getLogger("athanor.sweep")


def job_argv(overrides: Sequence[str], folder: Path, nproc: int) -> list[str]:
    """The job's command: its overrides, then the launcher's (a rebuilt manifest reads the job's
    own overrides as those before the last ``resume=auto``: manifest.entry_from_folder)."""
    extra = [f"distributed.nproc_per_node={nproc}"] if nproc > 1 else []
    return [
        sys.executable,
        "-m",
        "athanor.train",
        *overrides,
        f"hydra.run.dir={_quoted(folder)}",
        "resume=auto",
        "hydra.mode=RUN",  # one run: a preset's `hydra.mode: MULTIRUN` must not sweep again
        *extra,
    ]


def _quoted(path: Path) -> str:
    """A folder named by overrides holds ``=`` and ``,``: quoted, Hydra reads it as one string."""
    text = str(path).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def halved_batch(job_config: DictConfig) -> list[str]:
    """Overrides for an out-of-memory retry: half the batch, twice the accumulation (the
    effective batch stays)."""
    batch, accumulate = int(job_config.data.batch_size), int(job_config.trainer.accumulate)
    if batch < 2:
        return []
    return [f"data.batch_size={batch // 2}", f"trainer.accumulate={accumulate * 2}"]


def _set_aside(folder: Path) -> None:
    """A failed job reruns from scratch; its old folder is kept beside it for the record."""
    if folder.exists():
        folder.rename(numbered_aside(folder, "failed"))


class PoolRunner:
    """Plans the jobs of one batch (skip / resume / rerun) and runs them on the pool."""

    def __init__(self, hydra_context, config: DictConfig, settings: dict[str, Any]) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        self.settings = settings
        self.lock: RunLock | None = None
        self.stopped_by: int | None = None  # the stop signal that ended the sweep early

    def job_config(self, overrides: Sequence[str], idx: int) -> DictConfig:
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = idx
            cfg.hydra.job.num = idx
        return cfg

    def run(
        self,
        job_overrides: Sequence[Sequence[str]],
        indices: Sequence[int],
        watch: Watch | None = None,
    ) -> list[Entry]:
        """Run the batch; ``indices`` number its jobs (Optuna: the trial numbers)."""
        options = PoolOptions.read(self.settings)
        slots = options.slots()
        self._hold_sweep_folder()
        manifest = Manifest(self.sweep_dir)
        entries, jobs = [], []
        for idx, overrides in zip(indices, map(list, job_overrides), strict=True):
            entry = manifest.get(overrides)
            if entry is not None and finished(entry):
                log.info("sweep: job %d already completed, skipped: %s", entry.index, entry.folder)
                entries.append(entry)
                continue
            cfg = self.job_config(overrides, idx if entry is None else entry.index)
            if entry is not None:
                wait_for_previous_process(Path(entry.folder), entry.index)
            if entry is None:
                folder = self.sweep_dir / str(cfg.hydra.sweep.subdir)
                entry = Entry(idx, overrides, str(folder))
            elif entry.status == FAILED:
                _set_aside(Path(entry.folder))
                log.info("sweep: job %d failed before, rerunning it", entry.index)
            else:
                log.info("sweep: job %d was %s, resuming it", entry.index, entry.status)
            retry = halved_batch(cfg) if options.oom_retry_batch_halving else []
            argv = job_argv(overrides, Path(entry.folder), options.gpus_per_job)
            jobs.append(Job(entry, argv, retry))
            entries.append(entry)
            manifest.put(entry)
        log.info(
            "sweep: %d jobs (%d to run) on %d slot(s): %s",
            len(entries),
            len(jobs),
            len(slots),
            ", ".join(slot.name for slot in slots),
        )
        pool = Pool(slots, manifest, watch)
        pool.run(jobs)
        self.stopped_by = pool.stopped_by
        return entries

    def _hold_sweep_folder(self) -> None:
        """Lock the sweep folder for this process's life (a second sweep into it is refused,
        naming this one); a lock left by a killed sweep is taken over with a warning."""
        if self.lock is None:
            self.sweep_dir.mkdir(parents=True, exist_ok=True)
            self.lock = RunLock.acquire(self.sweep_dir, what="sweep")
            atexit.register(self.lock.release)


def job_returns(entries: list[Entry], monitor_of) -> list[JobReturn]:
    returns = []
    for e in entries:
        ret = JobReturn(overrides=e.overrides, working_dir=e.folder)
        ret.status = JobStatus.COMPLETED  # a failed job is in the table, not an exception
        ret.return_value = monitor_of(e)
        returns.append(ret)
    return returns


def best_value(entry: Entry) -> float:
    summary = RunDir(Path(entry.folder)).read_summary()
    value = (summary.get("best") or {}).get(summary.get("monitor"))
    return float("nan") if value is None else float(value)


def end_of_sweep(entries: list[Entry], runner: PoolRunner) -> None:
    """The table of every job; exit 130 when a stop signal ended the sweep, else non-zero naming
    the failed jobs."""
    sweep_dir = runner.sweep_dir
    print(f"\nSweep {sweep_dir}\n{sweep_table(entries, sweep_dir)}", flush=True)
    if runner.stopped_by is not None:
        log.warning("%s", interrupted_message(entries, sweep_dir, signal_name(runner.stopped_by)))
        sys.exit(EXIT_INTERRUPTED)
    problem = failed_message(entries, sweep_dir)
    if problem:
        report("Sweep failed", problem)
        sys.exit(EXIT_FAILED)


def _guarded(fn, *args, sweep_dir: Path | None = None):
    """``fn(*args)``; a ConfigError ends the command (exit 2), and the sweep folder claimed for
    it goes when nothing was written there yet."""
    try:
        return fn(*args)
    except ConfigError as err:
        unused = sweep_dir is not None and sweep_dir.is_dir() and not any(sweep_dir.iterdir())
        if unused:
            sweep_dir.rmdir()
        report("Config error", str(err) + (" Nothing was written." if unused else ""))
        sys.exit(EXIT_USER_ERROR)


class PoolLauncher(Launcher):
    """``hydra/launcher=pool``: every job its own process on its share of the devices."""

    def __init__(self, **settings: Any) -> None:  # read from the config: plain containers
        self.config: DictConfig | None = None
        self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        collector.start_up_done()  # from here this process only starts and waits for jobs
        runner = PoolRunner(self.hydra_context, self.config, launcher_settings(self.config))
        indices = range(initial_job_idx, initial_job_idx + len(job_overrides))
        entries = _guarded(runner.run, job_overrides, indices)
        end_of_sweep(entries, runner)
        return job_returns(entries, best_value)


def launcher_settings(config: DictConfig) -> dict[str, Any]:
    """The pool's keys (the default launcher), else one job at a time (hydra/launcher=basic:
    Optuna's trials still run through the pool, each its own process)."""
    node = config.hydra.launcher
    if str(node.get("_target_", "")).endswith("PoolLauncher"):
        return OmegaConf.to_container(node, resolve=True)
    return {}


def _is_sweep(arg: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(arg).is_sweep_override()
    except Exception:  # noqa: BLE001 - not ours to judge: the job reports a bad override
        return False


def search_space(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Hydra's sweep syntax (``choice``, ``range``, ``interval``, ``tag(log, ...)``) as the plain
    descriptions athanor.sweep.study takes."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    parser = OverridesParser.create()
    space = {}
    for key, text in params.items():
        try:
            value = parser.parse_override(f"{key}={text}").value()
        except Exception as err:  # noqa: BLE001 - Hydra's grammar errors have many types
            raise ConfigError(
                f"hydra.sweeper.params.{key}={text!r} is not Hydra sweep syntax: {err}"
            ) from err
        if isinstance(value, ChoiceSweep):
            space[key] = {"choice": list(value.list)}
        elif isinstance(value, RangeSweep):
            space[key] = {"choice": list(range(int(value.start), int(value.stop), int(value.step)))}
        elif isinstance(value, IntervalSweep):
            ints = isinstance(value.start, int) and isinstance(value.end, int)
            space[key] = {
                "low": value.start,
                "high": value.end,
                "log": "log" in value.tags,
                "int": ints,
            }
        else:
            space[key] = {"choice": [value]}
    return space


class OptunaSweeper(Sweeper):
    """``hparams_search=<preset>``: an Optuna study driven here (optuna 4+), trials run on the pool,
    pruned from the validation metric every epoch."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config

    def sweep(self, arguments: list[str]) -> Any:
        try:
            from athanor.sweep import study
        except ImportError:
            report(
                "Config error",
                "hparams_search= runs an Optuna study, and optuna is not installed: "
                "pip install 'athanor[optuna]'.",
            )
            sys.exit(EXIT_USER_ERROR)
        settings = OmegaConf.to_container(self.config.hydra.sweeper, resolve=True)
        params = dict(settings.pop("params", None) or {})
        fixed = []
        for arg in arguments:  # `optim=choice(sgd,adamw)` or `seed=0,1` on the command line
            key, _, value = arg.partition("=")
            sweeps = value and _is_sweep(arg)
            params.update({key: value} if sweeps else {})
            fixed += [] if sweeps else [arg]
        space = search_space(params)
        runner = PoolRunner(self.hydra_context, self.config, launcher_settings(self.config))
        monitor = str(self.config.checkpoint.monitor)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        driver = _guarded(study.StudyDriver, settings, fixed, space, monitor, sweep_dir=sweep_dir)

        def run_batch(job_overrides, indices, watch):
            entries = runner.run(job_overrides, indices, watch)
            if runner.stopped_by is not None:  # no trial is asked after a stop signal
                end_of_sweep(entries, runner)
            return entries

        entries = _guarded(driver.run, run_batch)
        print(driver.summary(), flush=True)
        end_of_sweep(entries, runner)
        return driver.best()
