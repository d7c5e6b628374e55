"""What the trainer does to each repeated block (engine/blocks.py) of a model:

- ``trainer.activation_checkpointing=true``: the block keeps only its input for backward and
  recomputes its activations there (``torch.distributed._composable.checkpoint``: non-reentrant
  ``torch.utils.checkpoint`` as hooks, so parameter names and state dicts are unchanged). Memory
  for activations drops to about one block's; the compute grows by about one forward.
- ``trainer.compile=regional``: ``block.compile()`` on each block instead of compiling the whole
  model. Blocks of one class share their compiled code (parameters are graph inputs), so
  start-up compiles each kind once, not the whole network.

Both apply before FSDP wraps the blocks (torchtitan's order: checkpointing, compile, shard).
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn
from torch.distributed._composable import checkpoint

from athanor.engine.blocks import describe

log = logging.getLogger("athanor")


def checkpoint_activations(model: nn.Module, blocks: list[nn.Module]) -> None:
    for block in blocks:
        checkpoint(block)
    if blocks:
        log.info(
            "activation checkpointing: %s recompute their activations in backward", describe(blocks)
        )
    else:
        log.warning(
            "trainer.activation_checkpointing=true: no block of %s is known, so nothing is "
            "checkpointed. Name its repeated blocks with model.blocks=[MyBlock].",
            type(model).__name__,
        )


def compile_regions(model: nn.Module, blocks: list[nn.Module]) -> dict[str, Any]:
    """Compile each block (lazily: at its first call). Returns what was compiled, for the log
    and the summary (``compile_cost`` adds the time it took once training has started)."""
    for block in blocks:
        block.compile()
    if blocks:
        log.info(
            "trainer.compile=regional: compiling %s (%d kinds) at the first step",
            describe(blocks),
            len({type(b) for b in blocks}),
        )
    else:
        log.warning(
            "trainer.compile=regional: no block of %s is known, so nothing is compiled. Name its "
            "repeated blocks with model.blocks=[MyBlock], or compile the whole model with "
            "trainer.compile=true.",
            type(model).__name__,
        )
    return {"mode": "regional", "blocks": describe(blocks)}


def compile_cost() -> float:
    """Seconds this process has spent compiling so far (dynamo tracing, AOT autograd and
    inductor, forward and backward graphs)."""
    from torch._dynamo.utils import calculate_time_spent

    return round(calculate_time_spent().get("total_wall_time", 0.0), 3)
