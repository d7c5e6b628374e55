"""Sharded checkpoints (``distributed.strategy=fsdp``), as the run folder holds them.

Every rank writes its shard of the model and optimizer with ``torch.distributed.checkpoint``
(DCP) into ``.step_<step>.shards.tmp/``; rank 0 renames the complete folder to
``step_<step>.shards/`` and only then writes ``step_<step>.pt`` (record/checkpoints.py), whose
train state names the folder in place of the weights: ``{"shards": "step_<step>.shards"}``. The
.pt file stays the commit point: a process killed before it leaves a folder no checkpoint names,
removed by the next run in that folder. ``best.pt`` and the ``model.pt`` written at the end of a
run hold consolidated weights (plain tensors), like a ddp run's.

Reading a sharded checkpoint in one process (evaluate, export) consolidates the model part from
its folder; the weights are the same tensors the ranks held, joined.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

from athanor.errors import ConfigError

SHARDS_KEY = "shards"  # a train-state part saved as a DCP folder: {"shards": <folder>}
SUFFIX = ".shards"


def is_ref(part: Any) -> bool:
    return isinstance(part, dict) and set(part) == {SHARDS_KEY}


def shards_folder(checkpoints: Path, step: int) -> Path:
    return checkpoints / f"step_{step:09d}{SUFFIX}"


def locate(checkpoint: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Make the shard references of a loaded checkpoint absolute (they are relative to the
    checkpoint file's folder, so a run folder can move)."""
    state = checkpoint.get("state")
    if isinstance(state, dict):
        for name, part in state.items():
            if is_ref(part):
                state[name] = {SHARDS_KEY: str(folder / part[SHARDS_KEY])}
    return checkpoint


def read_part(ref: dict[str, str], key: str) -> dict[str, Any]:
    """One entry (e.g. ``model``) of a DCP folder, consolidated into plain tensors in this
    process (no process group needed)."""
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

    folder = Path(ref[SHARDS_KEY])
    if not (folder / ".metadata").is_file():
        raise ConfigError(
            f"The sharded checkpoint folder {folder} is missing or incomplete (no .metadata); "
            "use the run's model.pt or best.pt, or an older step_*.pt."
        )
    with warnings.catch_warnings():  # "no process group: loading in a single process" (meant)
        warnings.simplefilter("ignore", UserWarning)
        loaded = _load_state_dict_from_keys({key}, checkpoint_id=str(folder))
    return loaded[key]


def consolidated(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint with its model weights read from their shards (others parts as saved):
    what evaluate and export need of a sharded checkpoint."""
    state = dict(checkpoint["state"])
    if is_ref(state.get("model")):
        state["model"] = read_part(state["model"], "model")
    return {**checkpoint, "state": state}


def remove_unnamed(checkpoints: Path) -> None:
    """Shard folders no step_*.pt names (a process killed between the two writes)."""
    for folder in checkpoints.glob(f"step_*{SUFFIX}"):
        if not folder.with_suffix(".pt").exists():
            shutil.rmtree(folder, ignore_errors=True)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
