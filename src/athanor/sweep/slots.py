"""Which devices each sweep job gets: the pool's slots.

A slot is the share of the machine one job runs on: its GPU ids (what ``CUDA_VISIBLE_DEVICES``
is set to) and its CPU threads. ``jobs_per_device`` jobs share one GPU, or ``gpus_per_job`` GPUs
make one (DDP) job; without GPUs, ``jobs_per_device`` jobs share the CPU with its threads split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, Any

from athanor.config.schema import parse
from athanor.errors import ConfigError
from athanor.typecheck import Range

AtLeastOne = Range(1, what="a count of jobs or GPUs")


@dataclass(frozen=True)
class PoolOptions:
    """The pool launcher's keys (conf/hydra/launcher/pool.yaml), checked like every other key."""

    devices: list[int | str] | None = None  # GPU ids; None: every visible GPU
    jobs_per_device: Annotated[int, AtLeastOne] = 1
    gpus_per_job: Annotated[int, AtLeastOne] = 1
    oom_retry_batch_halving: bool = False

    @classmethod
    def read(cls, values: dict[str, Any]) -> PoolOptions:
        """From the launcher's plain config node: a wrong type, a value below 1 or an unknown
        key is a ConfigError naming the key."""
        return parse(cls, {k: v for k, v in values.items() if k != "_target_"}, "hydra.launcher")

    def slots(self) -> list[Slot]:
        """The slots on this machine; named devices must be visible here."""
        devices = None if self.devices is None else [str(d) for d in self.devices]
        if devices is not None:
            check_visible(devices, visible_gpus())
        return plan_slots(
            devices,
            jobs_per_device=self.jobs_per_device,
            gpus_per_job=self.gpus_per_job,
        )


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


def check_visible(devices: list[str], visible: list[str]) -> None:
    """Refuse GPU ids this machine does not have: a job given one would run on the CPU."""
    missing = [d for d in devices if d not in visible]
    if not missing:
        return
    have = f"the visible ones are {', '.join(visible)}" if visible else "no GPU is visible here"
    raise ConfigError(
        f"hydra.launcher.devices=[{','.join(devices)}] names GPU {', '.join(missing)}, which this "
        f"machine does not have ({have}; CUDA_VISIBLE_DEVICES narrows them). Name visible ids, "
        "or leave hydra.launcher.devices=null to use every visible GPU (none: the CPU)."
    )


def plan_slots(
    devices: list[str] | None,
    *,
    jobs_per_device: int = 1,
    gpus_per_job: int = 1,
    cpus: int | None = None,
) -> list[Slot]:
    """The pool's slots. ``devices=None``: every visible GPU (none: the CPU)."""
    if jobs_per_device > 1 and gpus_per_job > 1:
        raise ConfigError(
            f"hydra.launcher.jobs_per_device={jobs_per_device} with gpus_per_job={gpus_per_job}: "
            "choose one, several jobs per GPU or several GPUs per job."
        )
    gpus = visible_gpus() if devices is None else [str(d) for d in devices]
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
