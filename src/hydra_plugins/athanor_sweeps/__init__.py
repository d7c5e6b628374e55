"""athanor's sweep plugins for Hydra, which finds plugins in the ``hydra_plugins`` namespace.

Hydra imports every module of that namespace on each start (plain runs, ``--help`` and
``athanor list`` included), so these classes are shims that import nothing of athanor: the real
launcher and sweeper (athanor.cli.sweep_plugins, which imports the sweep pool, the run record and torch)
are imported only when Hydra builds one, and that object is what Hydra gets. Hydra accepts only
plugin classes defined under hydra_plugins, hence the shims rather than a re-export."""

from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper


class PoolLauncher(Launcher):
    """``hydra/launcher=pool`` (conf/hydra/launcher/pool.yaml)."""

    def __new__(cls, *args, **kwargs):
        from athanor.cli.sweep_plugins import PoolLauncher as Real

        return Real(*args, **kwargs)

    def setup(self, **kwargs) -> None:  # never called: __new__ returns the real launcher
        raise NotImplementedError

    def launch(self, job_overrides, initial_job_idx):  # idem
        raise NotImplementedError


class OptunaSweeper(Sweeper):
    """``hydra/sweeper=optuna_tpe``, chosen by conf/hparams_search/ presets."""

    def __new__(cls, *args, **kwargs):
        from athanor.cli.sweep_plugins import OptunaSweeper as Real

        return Real(*args, **kwargs)

    def setup(self, **kwargs) -> None:  # never called: __new__ returns the real sweeper
        raise NotImplementedError

    def sweep(self, arguments):  # idem
        raise NotImplementedError
