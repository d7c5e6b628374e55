"""SLURM for sweeps (``hydra/launcher=slurm``, submitted through submitit): what each job asks
SLURM for, derived from the job's own settings; the launcher's keys checked before anything is
submitted, against the partition's nodes when ``sinfo`` can say; and SLURM's refusal in
athanor's words. (The SLURM job a run belongs to is in its summary: record/environment.py.)
Nothing here needs ``sacct`` (accounting is often off)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from athanor.errors import ConfigError

# the signal SLURM sends `signal_delay_s` before the time limit, and submitit's requeue signal:
# USR1 is athanor's stop signal (and data-loader workers ignore it), submitit's default USR2 is not
PREEMPT_SIGNAL = "USR1"


def tasks_per_node(gpus_per_node: int | None) -> int:
    """One task per GPU, each one DDP process; a CPU job is one task."""
    return max(1, int(gpus_per_node or 0))


def cpus_per_task(
    num_workers: int | None, nproc_per_node: int | None, gpus_per_node: int | None
) -> int:
    """A process and its data-loader workers, for every process of the task: with GPUs each task
    is one process; on CPUs the one task starts ``distributed.nproc_per_node`` of them."""
    processes = 1 if gpus_per_node else max(1, int(nproc_per_node or 1))
    return processes * (1 + int(num_workers or 0))


RESOURCE_KEYS = ("partition", "nodes", "tasks_per_node", "cpus_per_task", "mem_gb", "gpus_per_node")
_COUNTS = {  # key: smallest valid value (None allowed where SLURM has a default)
    "nodes": 1,
    "tasks_per_node": 1,
    "gpus_per_node": 0,
    "cpus_per_task": 1,
    "timeout_min": 1,
    "max_num_timeout": 0,
    "signal_delay_s": 0,
}


def check_slurm_here() -> None:
    """The SLURM commands submitit runs, on this machine's PATH."""
    missing = [cmd for cmd in ("sbatch", "srun") if shutil.which(cmd) is None]
    if missing:
        raise ConfigError(
            f"hydra/launcher=slurm submits with SLURM's {' and '.join(missing)}, not found here "
            "(PATH): start the sweep on a SLURM login node, or use hydra/launcher=pool on this "
            "machine."
        )


def check_settings(settings: Mapping[str, Any]) -> None:
    """The launcher's keys, before any job is submitted: whole numbers in range, memory in GB,
    a signal that comes before the time limit."""
    for key, low in _COUNTS.items():
        value = settings.get(key)
        if value is None and key in ("gpus_per_node", "cpus_per_task"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(
                f"hydra.launcher.{key}={value!r}: it must be a whole number of at least {low}."
            )
    mem = settings.get("mem_gb")
    if mem is not None and (isinstance(mem, bool) or not isinstance(mem, int | float) or mem <= 0):
        raise ConfigError(
            f"hydra.launcher.mem_gb={mem!r}: give the memory per node in GB (e.g. 16), or null "
            "for the partition's default."
        )
    limit_s = int(settings["timeout_min"]) * 60
    if int(settings["signal_delay_s"]) >= limit_s:
        raise ConfigError(
            f"hydra.launcher.signal_delay_s={settings['signal_delay_s']} is not before the time "
            f"limit (timeout_min={settings['timeout_min']}, {limit_s} s): the run would get no "
            "time to checkpoint. Use a delay shorter than the limit (120 s is usual)."
        )


def _sinfo(*args: str) -> list[str] | None:
    """sinfo's lines, or None when it cannot say (not installed, no controller reachable)."""
    if shutil.which("sinfo") is None:
        return None
    try:
        out = subprocess.run(["sinfo", "-h", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return None if out.returncode else out.stdout.splitlines()


def _gpus(gres: str) -> int:
    """GPUs in sinfo's GRES column (``gpu:4``, ``gpu:a100:4(S:0-1)``, ``(null)``)."""
    counts = (g.split(":")[-1].split("(")[0] for g in gres.split(",") if g.startswith("gpu"))
    return sum(int(c) for c in counts if c.isdigit())


def partition_nodes(partition: str | None) -> list[dict[str, Any]] | None:
    """Each node of the partition (its default one when None): CPUs, memory in MB, GPUs. None
    when ``sinfo`` cannot say; a partition that does not exist is refused, naming those that do."""
    lines = _sinfo("-N", "-o", "%N|%c|%m|%G|%P")
    if lines is None:
        return None
    rows = [line.split("|") for line in lines]
    names = sorted({part.rstrip("*") for *_, part in rows})
    if partition is not None and partition not in names:
        raise ConfigError(
            f"hydra.launcher.partition={partition!r} is not a partition of this cluster; its "
            f"partitions are {', '.join(names) or 'none'} (sinfo)."
        )
    return [
        {"name": name, "cpus": int(cpus), "mem_mb": int(mem.rstrip("+")), "gpus": _gpus(gres)}
        for name, cpus, mem, gres, part in rows
        if part.rstrip("*") == partition or (partition is None and part.endswith("*"))
    ]


def check_fits(settings: Mapping[str, Any], nodes: list[dict[str, Any]] | None) -> None:
    """Refuse a job no node of the partition can hold, naming what was asked and the biggest
    node; ``nodes=None`` (sinfo could not say) checks nothing."""
    if not nodes:
        return
    tasks = int(settings["tasks_per_node"])
    cpus = tasks * int(settings.get("cpus_per_task") or 1)
    mem_mb = None if settings.get("mem_gb") is None else float(settings["mem_gb"]) * 1024
    gpus = int(settings.get("gpus_per_node") or 0)
    fit = [
        n
        for n in nodes
        if n["cpus"] >= cpus and (mem_mb is None or n["mem_mb"] >= mem_mb) and n["gpus"] >= gpus
    ]
    if len(fit) >= int(settings["nodes"]):
        return
    biggest = max(nodes, key=lambda n: (n["gpus"], n["cpus"], n["mem_mb"]))
    where = settings.get("partition") or "the default partition"
    asked = f"{cpus} CPUs ({tasks} task(s) x cpus_per_task={settings.get('cpus_per_task')})"
    asked += f", mem_gb={settings.get('mem_gb')}, gpus_per_node={gpus}"
    raise ConfigError(
        f"hydra.launcher asks each of {settings['nodes']} node(s) for {asked}, and {where} "
        f"has {len(fit)} node(s) with that much (its biggest, {biggest['name']}: "
        f"{biggest['cpus']} CPUs, {biggest['mem_mb'] // 1024} GB, {biggest['gpus']} GPUs). "
        "Ask for less (hydra.launcher.cpus_per_task, mem_gb=null for the partition's default, "
        "gpus_per_node) or pick another hydra.launcher.partition."
    )


def refused(error: BaseException, settings: Mapping[str, Any]) -> ConfigError:
    """SLURM refused the submission (sbatch's message): one paragraph naming it and the keys."""
    said = " ".join(str(error).split())  # submitit's error is sbatch's stderr
    keys = ", ".join(f"{k}={settings.get(k)}" for k in RESOURCE_KEYS)
    return ConfigError(
        f"SLURM refused the sweep's jobs ({said}). They asked for {keys} "
        "(hydra.launcher.*): change what SLURM names, e.g. a partition that exists "
        "(`sinfo`) or fewer resources."
    )
