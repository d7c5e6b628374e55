"""Commands that work on a finished run's checkpoint, outside training: `evaluate` measures it on a
split (`offline/checkpoint_eval.py`) and `athanor export` writes it in a deployable format
(`offline/export.py`)."""
