"""``hydra/launcher=slurm``: Hydra's submitit SLURM launcher, with athanor's checks and job
layout (exposed to Hydra by ``hydra_plugins.athanor_sweeps.SlurmLauncher``).

Before submitting: the launcher's keys are checked (athanor.sweep.slurm) and SLURM's refusal is
one paragraph, exit 2. Each job is submitted with ``resume=auto`` (unless the command sets
``resume``), so a job SLURM starts again (``scontrol requeue``, preemption, submitit's requeue
at the time limit) continues from its checkpoint in its own folder. In the job, the process reads
as the user's ``train <overrides>`` (summary.json's ``command``, the run lock), not submitit's
``_submit.py <folder>``. The time-limit signal is SIGUSR1, athanor's stop signal: the run
checkpoints and writes its summary, then submitit's handler requeues the job.

Job states come from ``squeue`` (``QueueWatcher``), not submitit's ``sacct``, which fails where
accounting is off: there, a job that died without a result (killed, out of memory, a lost node)
left the sweep waiting forever. Such a job now ends the sweep, once every job is done, with one
paragraph naming it and its log (exit 1).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher as SubmititLocal
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as Submitit
from omegaconf import OmegaConf
from submitit.core.utils import FailedJobError, UncompletedJobError
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob, SlurmJobEnvironment

from athanor.cli.outcome import report
from athanor.errors import EXIT_FAILED, EXIT_USER_ERROR, ConfigError
from athanor.sweep import slurm

log = logging.getLogger("athanor.sweep")


def _use_athanor_stop_signal() -> None:
    """submitit reads its requeue signal from the environment when it is imported, here and in
    the job (sbatch passes the environment on)."""
    os.environ["SUBMITIT_PREEMPT_SIGNAL"] = slurm.PREEMPT_SIGNAL
    submitit.JobEnvironment.USR_SIG = slurm.PREEMPT_SIGNAL


class SlurmLauncher(Submitit):
    """Every sweep job one SLURM job (an array of them), through submitit."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        try:
            slurm.check_slurm_here()
            slurm.check_settings(self.params)
            slurm.check_fits(self.params, slurm.partition_nodes(self.params.get("partition")))
        except ConfigError as err:
            report("Config error", str(err))
            sys.exit(EXIT_USER_ERROR)
        if int(self.params["timeout_min"]) < 60:
            log.warning(
                "hydra.launcher.timeout_min=%s is under 60: submitit then counts every preemption "
                "as a time-out, and requeues at most max_num_timeout=%s times in all",
                self.params["timeout_min"],
                self.params.get("max_num_timeout"),
            )
        _use_athanor_stop_signal()
        with_resume = [
            [*o, "resume=auto"] if not any(a.startswith("resume=") for a in o) else list(o)
            for o in job_overrides
        ]
        try:
            returns = self._submit_and_wait(with_resume, initial_job_idx)
        except FailedJobError as err:
            if not str(err).startswith("sbatch"):
                raise  # a job's own failure, not the submission's
            report("Config error", str(slurm.refused(err, self.params)))
            sys.exit(EXIT_USER_ERROR)
        lost = [r for r in returns if isinstance(r, LostJob)]
        if lost:
            report("Sweep failed", " ".join(r.reason for r in lost))
            sys.exit(EXIT_FAILED)
        return returns

    def _submit_and_wait(
        self, job_overrides: list[list[str]], initial_job_idx: int
    ) -> list[JobReturn]:
        """hydra-submitit-launcher's launch (one array of jobs), with job states from squeue
        and each job's result read on its own."""
        SlurmJob.watcher = QueueWatcher(delay_s=30)  # one squeue for all jobs, 30 s apart at most
        params = dict(self.params)
        executor = submitit.AutoExecutor(
            cluster="slurm",
            folder=params.pop("submitit_folder"),
            slurm_max_num_timeout=params.pop("max_num_timeout"),
        )
        common = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{k if k in common else f"slurm_{k}": v for k, v in params.items()}
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("SLURM sweep of %d job(s) into %s", len(job_overrides), sweep_dir)
        numbers = range(initial_job_idx, initial_job_idx + len(job_overrides))
        state = Singleton.get_state()
        jobs = executor.map_array(
            self,
            job_overrides,
            ["hydra.sweep.dir"] * len(job_overrides),
            list(numbers),
            [f"job_id_for_{n}" for n in numbers],
            [state] * len(job_overrides),
        )
        return [_results(job)[0] for job in jobs]

    def __call__(self, sweep_overrides: list[str], *args: Any) -> JobReturn:
        """In the job's process, started by SLURM: it is the user's `train` command."""
        sys.argv = ["train", *sweep_overrides]
        SlurmJobEnvironment._requeue = _requeue  # called by submitit's time-limit handler
        return super().__call__(sweep_overrides, *args)


class LocalLauncher(SubmititLocal):
    """``hydra/launcher=local_ddp``: submitit's local executor, each job a process started by
    submitit, recorded (summary.json's ``command``) as the user's `train`, not ``_submit.py``."""

    def __call__(self, sweep_overrides: list[str], *args: Any) -> JobReturn:
        sys.argv = ["train", *sweep_overrides]
        return super().__call__(sweep_overrides, *args)


def _requeue(env: SlurmJobEnvironment, countdown: int) -> None:
    """submitit's requeue, without the race it can lose: `scontrol requeue` makes SLURM send
    SIGTERM to every process of the job step, scontrol included, sometimes before scontrol has
    exited. Killed so, the requeue was made; submitit took it for a failure, and the job's
    first start left an error as its result (seen on the test cluster under load)."""
    try:
        subprocess.check_call(["scontrol", "requeue", env.job_id], timeout=60)
    except subprocess.CalledProcessError as err:
        if err.returncode != -signal.SIGTERM:
            raise
    log.info("requeued SLURM job %s (%d time-outs left)", env.job_id, countdown)


class LostJob(JobReturn):
    """A job SLURM ended without a result (killed, out of memory, a lost node): its reason."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


def _results(job) -> list[Any]:
    """submitit's results of one SLURM job, or a LostJob saying how it ended without any."""
    try:
        return job.results()
    except UncompletedJobError:
        state = job.watcher.get_state(job.job_id, mode="cache")
        return [
            LostJob(
                f"SLURM job {job.job_id} ended ({state}) without a result: it was killed, ran out "
                f"of memory or lost its node (the sweep waited for its other jobs). Its log is "
                f"{job.paths.stderr}; its run folder keeps its last checkpoint."
            )
        ]


# the states after which SLURM runs a job no more; any other (PENDING, RUNNING, REQUEUED,
# COMPLETING, PREEMPTED before its requeue, ...) is waited for
FINAL = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "TIMEOUT",
    "LEFT_THE_QUEUE",
}


class QueueWatcher(SlurmInfoWatcher):
    """Job states from ``squeue --states=all`` (the controller's own queue), not ``sacct``. squeue
    lists a job while it waits or runs and for MinJobAge (300 s by default) after it ends; a job
    it no longer lists has left the queue."""

    def _make_command(self) -> list[str] | None:
        arrays = sorted({job_id.split("_")[0] for job_id in self._registered - self._finished})
        if not arrays:
            return None
        return ["squeue", "-h", "--states=all", "-o", "%i|%T|%N", "-j", ",".join(arrays)]

    def update(self) -> None:
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as err:
            log.warning("squeue failed (%s); job states are read again later", err)
            out = None
        # every job of the arrays asked for has left the queue: squeue says the id is invalid
        gone = out is not None and out.returncode and "Invalid job id" in out.stderr
        if out is not None and (out.returncode == 0 or gone):
            listed = self.read_info("JobID|State|NodeList\n" + (out.stdout if not gone else ""))
            self._info_dict.update(listed)
            for job_id in self._registered - self._finished:
                if job_id not in listed:
                    self._info_dict[job_id] = {"State": "LEFT_THE_QUEUE"}
        elif out is not None:
            log.warning("squeue failed: %s", out.stderr.strip())
        self._last_status_check = time.time()
        for job_id in self._registered - self._finished:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)

    def is_done(self, job_id: str, mode: str = "standard") -> bool:
        return self.get_state(job_id, mode=mode).split()[0].upper() in FINAL
