"""`train distributed.nproc_per_node=N`: the parent launches a worker group (torch elastic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def maybe_launch(config: dict[str, Any], run_dir: Path) -> Any:
    """Launch workers when asked to and not already inside a worker group; else return None."""
    del run_dir
    nproc = int(config.get("distributed", {}).get("nproc_per_node", 1))
    if nproc <= 1:
        return None
    from athanor.errors import ConfigError

    raise ConfigError("distributed.nproc_per_node>1 is not supported yet; use torchrun.")
