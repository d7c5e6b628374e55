"""Which devices each sweep job gets: the pool's slots.

A slot is the share of the machine one job runs on: its GPU ids (what ``CUDA_VISIBLE_DEVICES``
is set to) and its CPU threads. ``jobs_per_device`` jobs share one GPU, or ``gpus_per_job`` GPUs
make one (DDP) job; without GPUs, ``jobs_per_device`` jobs share the CPU with its threads split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from athanor.errors import ConfigError


@dataclass(frozen=True)
class Slot:
    devices: tuple[str, ...]  # GPU ids for CUDA_VISIBLE_DEVICES; () = CPU only
    threads: int  # OMP_NUM_THREADS / torch threads for the job

    @property
    def name(self) -> str:
        return f"gpu {','.join(self.devices)}" if self.devices else "cpu"

    def env(self) -> dict[str, str]:
        """What the job's process is started with."""
        return {
            "CUDA_VISIBLE_DEVICES": ",".join(self.devices),
            "OMP_NUM_THREADS": str(self.threads),
            "MKL_NUM_THREADS": str(self.threads),
        }


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES when set, else every GPU torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def plan_slots(
    devices: list[str] | None,
    *,
    jobs_per_device: int = 1,
    gpus_per_job: int = 1,
    cpus: int | None = None,
) -> list[Slot]:
    """The pool's slots. ``devices=None``: every visible GPU (none: the CPU)."""
    if jobs_per_device < 1 or gpus_per_job < 1:
        raise ConfigError(
            f"hydra.launcher.jobs_per_device={jobs_per_device} and gpus_per_job={gpus_per_job}: "
            "both must be whole numbers >= 1."
        )
    if jobs_per_device > 1 and gpus_per_job > 1:
        raise ConfigError(
            f"hydra.launcher.jobs_per_device={jobs_per_device} with gpus_per_job={gpus_per_job}: "
            "choose one, several jobs per GPU or several GPUs per job."
        )
    gpus = [str(d) for d in (visible_gpus() if devices is None else devices)]
    cpus = cpus or os.cpu_count() or 1
    if not gpus:
        threads = max(1, cpus // jobs_per_device)
        return [Slot((), threads) for _ in range(jobs_per_device)]
    if gpus_per_job > len(gpus):
        raise ConfigError(
            f"hydra.launcher.gpus_per_job={gpus_per_job} but only {len(gpus)} device(s) are "
            f"available ({', '.join(gpus)}); set hydra.launcher.devices or a smaller gpus_per_job."
        )
    groups = [tuple(gpus[i : i + gpus_per_job]) for i in range(0, len(gpus), gpus_per_job)]
    groups = [g for g in groups if len(g) == gpus_per_job]  # a remainder too small stays idle
    shares = [g for g in groups for _ in range(jobs_per_device)]
    threads = max(1, cpus // len(shares))
    return [Slot(g, threads) for g in shares]
