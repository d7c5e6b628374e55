"""athanor's sweep plugins for Hydra, which finds plugins in the ``hydra_plugins`` namespace.

The classes are defined here (Hydra accepts only plugins whose module is under hydra_plugins) as
thin subclasses; the logic is in athanor.cli.sweeps and athanor.sweep."""

from athanor.cli import sweeps as _sweeps


class PoolLauncher(_sweeps.PoolLauncher):
    """``hydra/launcher=pool`` (conf/hydra/launcher/pool.yaml)."""


class OptunaSweeper(_sweeps.OptunaSweeper):
    """``hydra/sweeper=optuna_tpe``, chosen by conf/hparams_search/ presets."""
