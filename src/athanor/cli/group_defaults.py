"""Each component group's group-wide keys, with their defaults, as Hydra configs.

The defaults are written once, in the option classes of config/groups.py; this module stores
them in Hydra's ConfigStore as ``group_defaults/<group>``, and conf/train.yaml merges each under
its group before the chosen file (``- group_defaults@data: data`` before ``- data: digits``). So
a group file holds only its ``name:`` and what differs, ``train data.batch_size=128`` works
under Hydra's struct mode whatever data set is chosen, and ``train --cfg job`` shows every key.
"""

from __future__ import annotations

from athanor.config.groups import group_defaults

GROUP = "group_defaults"


def register_group_defaults() -> None:
    """Store ``group_defaults/<group>`` for every component group (idempotent)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group, defaults in group_defaults().items():
        # `name: ???` first, so a group file without `name:` is a missing value, and
        # `--cfg job` lists the name above the keys
        node = {
            "name": "???",
            **{k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()},
        }
        store.store(group=GROUP, name=group, node=node, provider="athanor")
