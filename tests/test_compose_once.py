"""`train` composes the config once for a plain run (Hydra 1.3's main composes twice), and the
config it gets is the one Hydra's own two compositions give."""

from __future__ import annotations

import pytest
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_automatic_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from athanor.cli.compose import CONF_DIR, compose_once, prepare_hydra


@pytest.fixture
def hydra_app():
    prepare_hydra()
    GlobalHydra.instance().clear()
    search_path = create_automatic_config_search_path(None, None, str(CONF_DIR))
    yield Hydra.create_main_hydra2(task_name="train", config_search_path=search_path)
    GlobalHydra.instance().clear()


def as_hydra_main_does(app: Hydra, overrides: list[str]):
    """What hydra's _run_hydra + _run_app do for a plain run: read the mode, then compose to run
    (-> the config, and how many times the config loader ran)."""
    loads = []
    load = app.config_loader.load_configuration

    def counting(*args, **kwargs):
        loads.append(kwargs.get("run_mode"))
        return load(*args, **kwargs)

    app.config_loader.load_configuration = counting
    try:
        overrides = list(overrides)
        if app.get_mode(config_name="train", overrides=overrides) is None:
            overrides.append("hydra.mode=RUN")
        return app.compose_config("train", overrides, run_mode=RunMode.RUN), loads
    finally:
        del app.config_loader.load_configuration  # the class's method again


CASES = [
    [],
    ["experiment=digits_quick", "trainer.epochs=2", "optim.lr=1.0e-2"],
    ["model=simple_cnn", "data=fake", "+extra_key=1"],
]


@pytest.mark.parametrize("overrides", CASES)
def test_one_composition_gives_hydras_config(hydra_app, overrides):
    hydras, hydra_loads = as_hydra_main_does(hydra_app, overrides)
    with compose_once():
        ours, our_loads = as_hydra_main_does(hydra_app, overrides)
    assert len(hydra_loads) == 2 and our_loads == [RunMode.RUN]
    assert ours.hydra.mode == RunMode.RUN
    assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydras)  # the hydra node included


def test_a_sweep_override_takes_hydras_own_path(hydra_app):
    """Without -m, `a=1,2` is an error in RUN mode; Hydra's own get_mode still answers."""
    overrides = ["optim.lr=1.0e-2,2.0e-2"]
    with compose_once():
        assert hydra_app.get_mode(config_name="train", overrides=overrides) is None
        with pytest.raises(Exception, match="Ambiguous value"):
            hydra_app.compose_config("train", overrides, run_mode=RunMode.RUN)


def test_hydra_is_restored(hydra_app):
    before = Hydra.get_mode, Hydra.compose_config
    with compose_once():
        assert Hydra.get_mode is not before[0]
    assert (Hydra.get_mode, Hydra.compose_config) == before
