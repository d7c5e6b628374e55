"""athanor's sweep plugins for Hydra, which finds plugins in the ``hydra_plugins`` namespace.

Hydra imports every module of that namespace on each start (plain runs, ``--help`` and
``athanor list`` included), so these classes are shims that import nothing of athanor: the real
launcher and sweeper (athanor.cli.sweep_plugins, which imports the sweep pool, the run record and torch)
are imported only when Hydra builds one, and that object is what Hydra gets. Hydra accepts only
plugin classes defined under hydra_plugins, hence the shims rather than a re-export."""

from importlib import import_module

from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper


class _Shim:
    """Builds the real plugin, ``real`` (``module:Class``), imported only now. Hydra registers
    concrete plugin classes only: the abstract methods are stubs, never called, since
    ``__new__`` returns the real object."""

    real = ""

    def __new__(cls, *args, **kwargs):
        module, _, name = cls.real.partition(":")
        return getattr(import_module(module), name)(*args, **kwargs)

    def setup(self, **kwargs) -> None:
        raise NotImplementedError

    def launch(self, job_overrides, initial_job_idx):
        raise NotImplementedError

    def sweep(self, arguments):
        raise NotImplementedError


class PoolLauncher(_Shim, Launcher):
    """``hydra/launcher=pool`` (conf/hydra/launcher/pool.yaml)."""

    real = "athanor.cli.sweep_plugins:PoolLauncher"


class OptunaSweeper(_Shim, Sweeper):
    """``hydra/sweeper=optuna_tpe``, chosen by conf/hparams_search/ presets."""

    real = "athanor.cli.sweep_plugins:OptunaSweeper"


class SlurmLauncher(_Shim, Launcher):
    """``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml): submitit's, with athanor's
    checks and job layout (athanor.cli.slurm)."""

    real = "athanor.cli.slurm:SlurmLauncher"


class LocalLauncher(_Shim, Launcher):
    """``hydra/launcher=local_ddp`` (conf/hydra/launcher/local_ddp.yaml): submitit's local
    executor, its jobs recorded as `train` commands (athanor.cli.slurm)."""

    real = "athanor.cli.slurm:LocalLauncher"
