"""Launching a worker group: `train distributed.nproc_per_node=N` starts its own DDP workers
(`launch/workers.py`) around the one composed config and run folder."""
