"""Process-group setup/teardown, who may speak, and the few collectives the runner needs.

Started by torchrun (or by `train distributed.nproc_per_node=N`, which uses torch's own elastic
launcher), each process reads RANK / LOCAL_RANK / WORLD_SIZE from the environment. Rank 0 logs and
writes; the other ranks print errors only. A collective that fails because another rank died
becomes ``PeerFailed``, so the dead rank's own message is the one the user reads.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from athanor.errors import EXIT_USER_ERROR, ConfigError, PeerFailed


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def export_slurm_env() -> None:
    """SLURM with one task per GPU (`srun` or hydra/launcher=submitit_slurm): give each task the
    variables torchrun would set (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT), via submitit."""
    if "RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", 1)) <= 1:
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError as err:
        raise ConfigError(
            "This SLURM job has several tasks, so each task is one DDP process, and their ranks "
            "come from submitit: pip install 'athanor[slurm]' (or start one task per node with "
            "torchrun or distributed.nproc_per_node)."
        ) from err
    os.environ.setdefault("SUBMITIT_EXECUTOR", "slurm")  # a plain `srun` job, not submitit's
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def env_dist() -> Dist:
    return Dist(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world=int(os.environ.get("WORLD_SIZE", 1)),
    )


def in_worker_group() -> bool:
    """True inside processes started by torchrun or torch's elastic launcher."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", 1)) > 1


def quiet_unless_main(d: Dist) -> None:
    """Ranks other than 0 print nothing but errors (rank 0 shows the same logs and warnings)."""
    if d.is_main:
        return
    for name in ("", "athanor"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


@contextlib.contextmanager
def said_by_rank0(d: Dist) -> Iterator[None]:
    """For checks that fail alike on every rank (the config): only rank 0 reports the error; the
    others leave quietly with the same exit code."""
    try:
        yield
    except ConfigError:
        if d.is_main:
            raise
        raise SystemExit(EXIT_USER_ERROR) from None


@contextlib.contextmanager
def reported_once(d: Dist, wait_s: float = 5.0) -> Iterator[None]:
    """Errors raised alike on every rank (a bad config value found while building, NaN gradients)
    are shown by rank 0 only: rank 0 posts its error in the group's store, and a rank that failed
    the same way leaves quietly. A rank-specific error is still shown by its rank."""
    try:
        yield
    except Exception as err:
        if not d.enabled or not dist.is_initialized() or is_peer_failure(err):
            raise
        store = dist.distributed_c10d._get_default_store()
        text, key = f"{type(err).__name__}: {err}", "athanor/error/rank0"
        if d.is_main:
            store.set(key, text)
            raise
        try:
            store.wait([key], datetime.timedelta(seconds=wait_s))
            same = store.get(key).decode() == text
        except Exception:  # noqa: BLE001 - rank 0 did not fail (alike) in time: speak up
            same = False
        if not same:
            raise
        raise SystemExit(EXIT_USER_ERROR if isinstance(err, ConfigError) else 1) from None


def is_peer_failure(err: BaseException) -> bool:
    """A collective error caused by another process exiting (gloo: the socket closed)."""
    if isinstance(err, PeerFailed):
        return True
    text = str(err)
    closed = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
    return isinstance(err, dist.DistError) or any(s in text for s in closed)


def resolve_device(name: str, d: Dist) -> torch.device:
    """`auto`: the local rank's GPU when CUDA is present, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={name!r} but CUDA is not available here; use device=cpu or auto."
            )
        if device.index is None:
            device = torch.device("cuda", d.local_rank)
        check_visible(device, d)
        torch.cuda.set_device(device)
    return device


def check_visible(device: torch.device, d: Dist, visible: int | None = None) -> None:
    """Refuse a GPU index this process cannot see (``visible``: torch.cuda.device_count()),
    e.g. 2 processes per node in a pool slot or SLURM job that holds one GPU, instead of
    CUDA's "invalid device ordinal" from the first tensor moved there."""
    visible = torch.cuda.device_count() if visible is None else visible
    if device.index is not None and device.index >= visible:
        which = f"rank {d.rank} (local rank {d.local_rank})" if d.enabled else "this process"
        raise ConfigError(
            f"{which} would train on cuda:{device.index}, but it sees {visible} GPU(s) "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). Start "
            "at most as many processes per node as visible GPUs (distributed.nproc_per_node, "
            "torchrun --nproc_per_node, hydra.launcher.gpus_per_job), or name a visible device."
        )


def setup(d: Dist, device: torch.device, backend: str, timeout_s: int) -> None:
    if not d.enabled or dist.is_initialized():
        return
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend=backend,
        timeout=datetime.timedelta(seconds=timeout_s),
        device_id=device if device.type == "cuda" else None,
    )


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def teardown() -> None:
    if is_distributed():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def sum_across_ranks(*values: torch.Tensor | float, device: torch.device) -> list[float]:
    """Global sums of a few scalars (e.g. a logging window's loss sum and sample count)."""
    if not is_distributed():  # alone: read each value (a tensor -> one tiny copy), no packing
        return [float(v) for v in values]
    packed = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device) for v in values])
    return all_reduce_sum(packed).tolist()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def any_rank_each(flags: list[bool], device: torch.device) -> list[bool]:
    """For each flag: true on every rank when it is true on at least one (one collective)."""
    if not is_distributed():
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    return [v > 0 for v in all_reduce_sum(t).tolist()]
