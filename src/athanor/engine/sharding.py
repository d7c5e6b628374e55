"""``distributed.strategy=fsdp``: FSDP2 (``torch.distributed.fsdp.fully_shard``) on each block
(engine/blocks.py), then on the root, with a mixed-precision policy that follows
``trainer.precision``; and the sharded train-state part that saves and restores the model and
optimizer through ``torch.distributed.checkpoint`` (the folder layout: record/shards.py).

Each rank keeps 1/world of every parameter, gradient and optimizer moment; a block's full
parameters exist only while it runs (all-gathered before its forward and backward, freed after).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from athanor.engine.blocks import describe
from athanor.errors import ConfigError
from athanor.record import shards
from athanor.record.resume import OptimizerState

log = logging.getLogger("athanor")

# trainer.precision -> the dtype FSDP gathers parameters in; gradients are reduced in fp32
PARAM_DTYPES = {"32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def mixed_precision(precision: str) -> MixedPrecisionPolicy:
    """Parameters gathered (and computed) in the run's precision, gradients reduced in fp32:
    summing a world of bf16 gradients would lose their low bits."""
    dtype = PARAM_DTYPES[precision]
    return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32 if dtype else None)


def shard_model(
    model: nn.Module, blocks: list[nn.Module], precision: str, device: torch.device, world: int
) -> nn.Module:
    """``fully_shard`` each block, then the root (which takes the parameters left outside the
    blocks: stem, head). The model is changed in place and returned."""
    # fully_shard changes the classes (FSDP<Name>): name them before
    name, units = type(model).__name__, describe(blocks)
    mesh = init_device_mesh(device.type, (world,))
    policy = mixed_precision(precision)
    norms = _keep_norms_in_fp32(model, mesh) if policy.param_dtype is not None else 0
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    if not blocks:
        log.warning(
            "distributed.strategy=fsdp: no block of %s is known, so the whole model is one FSDP "
            "unit (gathered whole for each forward: no memory saved on parameters). Name its "
            "repeated blocks with model.blocks=[MyBlock].",
            name,
        )
    log.info(
        "fsdp: %d ranks, each holding 1/%d of the parameters; units: %s + the root; "
        "parameters in %s, gradients reduced in %s%s",
        world,
        world,
        units,
        policy.param_dtype or torch.float32,
        policy.reduce_dtype or torch.float32,
        f"; {norms} BatchNorm layers in float32" if norms else "",
    )
    return model


def _keep_norms_in_fp32(model: nn.Module, mesh) -> int:
    """Shard each BatchNorm layer as its own unit with float32 parameters: FSDP casts a unit's
    parameters to the policy's dtype but not its buffers, and batch_norm refuses bf16 weights
    beside float32 running statistics ("expected scalar type BFloat16 but found Float"). FSDP1
    left BatchNorm out of its casting for the same reason. -> how many."""
    fp32 = MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        fully_shard(norm, mesh=mesh, mp_policy=fp32)
    return len(norms)


def consolidated_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The full model state on rank 0's CPU (a collective: every rank calls it; the others get
    an empty dict)."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


class ShardedState:
    """The model and its optimizer as one train-state part (engine/state.py): ``write`` saves
    every rank's shards with DCP (a collective, before rank 0 writes the step file);
    ``state_dict`` is then the reference to that folder, and ``load_state_dict`` reads a folder
    back into this run's shards."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.model, self.optimizer = model, optimizer
        self.written: Path | None = None  # the newest complete shards folder

    def _state(self) -> dict[str, Any]:
        model_state, optimizer_state = get_state_dict(self.model, self.optimizer)
        return {"model": model_state, "optimizer": optimizer_state}

    def write(self, checkpoints: Path, step: int) -> Path:
        """Every rank writes its shards into a temp folder; once all have, rank 0 renames it:
        the step's folder is either complete or absent."""
        final = shards.shards_folder(checkpoints, step)
        tmp = final.with_name(f".{final.name}.tmp")
        if dist.get_rank() == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        dist.barrier()
        dcp.save(self._state(), checkpoint_id=str(tmp))
        dist.barrier()
        if dist.get_rank() == 0:
            shutil.rmtree(final, ignore_errors=True)  # the same step saved again (a resume)
            os.replace(tmp, final)
            fd = os.open(checkpoints, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.written = final
        return final

    def state_dict(self) -> dict[str, Any]:
        if self.written is None:
            raise RuntimeError("ShardedState.state_dict() before write(): no shards to name")
        return {shards.SHARDS_KEY: self.written.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not shards.is_ref(state):
            raise ConfigError(
                "the checkpoint holds unsharded weights (a ddp run's); resume it with "
                "distributed.strategy=ddp, or start a new fsdp run from its weights with "
                "model.weights=<checkpoint>."
            )
        folder = Path(state[shards.SHARDS_KEY])
        if not (folder / ".metadata").is_file():
            raise ConfigError(f"its shards folder {folder} is missing or incomplete.")
        target = self._state()
        dcp.load(target, checkpoint_id=str(folder))
        groups = OptimizerState(self.optimizer)  # a changed optim.lr / weight_decay takes effect
        built = groups.built()
        set_state_dict(
            self.model,
            self.optimizer,
            model_state_dict=target["model"],
            optim_state_dict=target["optimizer"],
        )
        groups.rebase(built)
