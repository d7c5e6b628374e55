"""The run folder and what is written into it: the run record (summary.json, metrics.jsonl),
checkpoints, resume."""
