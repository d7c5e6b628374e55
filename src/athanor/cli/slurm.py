"""``hydra/launcher=slurm``: Hydra's submitit SLURM launcher, with athanor's checks and job
layout (exposed to Hydra by ``hydra_plugins.athanor_sweeps.SlurmLauncher``).

Before submitting: the launcher's keys are checked (athanor.sweep.slurm) and SLURM's refusal is
one paragraph, exit 2. Each job is submitted with ``resume=auto`` (unless the command sets
``resume``), so a job SLURM starts again (``scontrol requeue``, preemption, submitit's requeue
at the time limit) continues from its checkpoint in its own folder. In the job, the process reads
as the user's ``train <overrides>`` (summary.json's ``command``, the run lock), not submitit's
``_submit.py <folder>``. The time-limit signal is SIGUSR1, athanor's stop signal: the run
checkpoints and writes its summary, then submitit's handler requeues the job.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as Submitit

from athanor.cli.outcome import report
from athanor.errors import EXIT_USER_ERROR, ConfigError
from athanor.sweep import slurm

log = logging.getLogger("athanor.sweep")


def _use_athanor_stop_signal() -> None:
    """submitit reads its requeue signal from the environment when it is imported, here and in
    the job (sbatch passes the environment on)."""
    os.environ["SUBMITIT_PREEMPT_SIGNAL"] = slurm.PREEMPT_SIGNAL
    from submitit.core.job_environment import JobEnvironment

    JobEnvironment.USR_SIG = slurm.PREEMPT_SIGNAL


class SlurmLauncher(Submitit):
    """Every sweep job one SLURM job (an array of them), through submitit."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        try:
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
        from submitit.core.utils import FailedJobError

        try:
            return super().launch(with_resume, initial_job_idx)
        except (FailedJobError, FileNotFoundError) as err:
            if isinstance(err, FailedJobError) and not str(err).startswith("sbatch"):
                raise  # a job's own failure, not the submission's
            report("Config error", str(slurm.refused(err, self.params)))
            sys.exit(EXIT_USER_ERROR)

    def __call__(self, sweep_overrides: list[str], *args: Any) -> JobReturn:
        """In the job's process, started by SLURM: it is the user's `train` command."""
        sys.argv = ["train", *sweep_overrides]
        return super().__call__(sweep_overrides, *args)
