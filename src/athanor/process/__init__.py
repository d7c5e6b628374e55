"""The process around a run: turning signals into a clean stop (`signals.py`), pausing the garbage
collector through start-up (`collector.py`) and the process's own clock (`clock.py`). Knows
nothing of training."""
