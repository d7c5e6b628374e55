"""One training run: find the checkpoint to resume -> build (seeded) -> start the record (the
run folder's summary) -> restore the train state -> loop -> close.

``train_run`` is the orchestration; ``TrainingRun`` (engine/session.py) holds a built run
(engine/parts.py), its train state (engine/state.py), its run record (record/record.py) and its
observers. Whatever
happens once the run has started, the observers are closed, the record says how the run ended
(completed / failed / interrupted) and the process group is destroyed (``finally``). A run that
fails before it starts (a config error while building) writes nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from athanor import distributed, plugins
from athanor.config.settings import RunSettings, run_settings
from athanor.distributed import Dist
from athanor.engine import dry_run as preflight
from athanor.engine.build import validate
from athanor.engine.parts import build_parts
from athanor.engine.session import TrainingRun
from athanor.errors import InterruptedRun, PeerFailed
from athanor.metrics.monitor import is_finite
from athanor.observe.trackers import check_trackers
from athanor.process import collector
from athanor.process.signals import StopSignals
from athanor.record import resume
from athanor.record.folder import RunDir
from athanor.record.scratch import remove_scratch

log = logging.getLogger("athanor")


def agree_on_run_dir(run_dir: Path | None, d: Dist) -> RunDir:
    """Rank 0's folder is the run's folder (Hydra's ${now:} differs between processes)."""
    path = distributed.broadcast_object(str(run_dir) if run_dir else None)
    if path is None:  # every caller (cli/) claims a folder first: a bug, not the user's input
        raise RuntimeError("train_run was called without a run folder")
    return RunDir(Path(path))


def train_run(config: dict[str, Any], run_dir: Path | None) -> float | None:
    """Train once. Returns the monitored metric's best value (for sweepers), or None."""
    plugins.load_user_code(config.get("imports"))  # the user's builders, before any validation
    distributed.export_slurm_env()
    d = distributed.env_dist()
    distributed.quiet_unless_main(d)
    with distributed.said_by_rank0(d):
        settings = run_settings(config)
        validate(config)
        check_trackers(settings.logger)
        device = distributed.resolve_device(settings.device, d)
    distributed.setup(d, device, settings.distributed.backend, settings.distributed.timeout_s)
    try:
        run = agree_on_run_dir(run_dir, d)
        with distributed.reported_once(d):
            return _train(config, settings, d, device, run)
    except Exception as err:
        if d.enabled and distributed.is_peer_failure(err):
            raise PeerFailed(
                f"rank {d.rank} stopped because another process of the group failed ({err})"
            ) from err
        raise
    finally:
        distributed.teardown()


def _dry_run(config, settings: RunSettings, d: Dist, device, run: RunDir) -> None:
    """Build, time a few steps, print the plan and estimate; the scratch folder goes away."""
    try:
        parts = build_parts(config, settings, d, device)
        text = preflight.report(parts, preflight.estimate(parts))
        if d.is_main:
            print(text, flush=True)
    finally:
        remove_scratch(run.path)


def _train(config, settings: RunSettings, d: Dist, device, run: RunDir) -> float | None:
    if settings.dry_run:
        return _dry_run(config, settings, d, device, run)
    resumed = resume.find_resume(config, run.checkpoints)
    with StopSignals.watch() as signals:
        build_config = resume.without_weights(config) if resumed else config
        job = TrainingRun(config, build_parts(build_config, settings, d, device), run, d)
        job.open(resumed)  # the run starts here: nothing was written before
        status, error = "failed", None
        try:
            job.check_disk()
            collector.start_up_done()  # built: the collector resumes, blind to what exists
            with signals.escalating(when=job.has_checkpoint):  # may cut a step, never a save
                job.fit(signals)
            status = "completed"
        except InterruptedRun as err:
            status, error = "interrupted", str(err)
            raise
        except BaseException as err:
            error = f"{type(err).__name__}: {err}"
            if isinstance(err, KeyboardInterrupt):
                status, error = "interrupted", f"second Ctrl-C at step {job.progress.step}"
            raise
        finally:
            summary = job.close(status, error, signals)
            if d.is_main:
                log.info(
                    "run %s: %s in %.1f s", summary["status"], run.path, summary["wall_time_s"]
                )
            if summary["status"] == "interrupted":
                signals.forward()  # e.g. submitit's requeue, after the checkpoint and the summary
        if summary["status"] == "interrupted":  # a signal after the last step: 130 all the same
            raise InterruptedRun(summary["error"])
    best = job.metrics_log.best_value()
    return best if is_finite(best) else None  # NaN/inf and no value alike: nothing to optimize
