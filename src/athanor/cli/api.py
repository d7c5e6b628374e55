"""The Python API behind ``athanor.compose`` and ``athanor.fit``: the same composition as `train`
(the current folder's conf/ first, then an optional ``config_dir``, then athanor's own), in this
process, with errors raised instead of exits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from athanor.cli import config_provenance
from athanor.cli.compose import check_group_choices, job_config, prepare_hydra
from athanor.cli.config_provenance import attribute
from athanor.cli.project import api_config_dir, athanor_conf
from athanor.cli.resolvers import claim_run_folder
from athanor.cli.resume_config import resumed_config
from athanor.errors import ConfigError


def _hydra_compose(
    overrides: list[str],
    config_dir: str | Path | None,
    config_name: str,
    sources: dict[str, str] | None = None,
):
    """Hydra's composed config (with its ``hydra`` node); ``sources``, when given, is filled
    with where each key came from (cli/config_provenance.py), while Hydra is initialized."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    if config_dir is not None and not Path(config_dir).is_dir():
        raise ConfigError(f"config_dir={str(config_dir)!r} is not a folder.")
    api_config_dir[:] = [Path(config_dir).resolve()] if config_dir else []
    try:  # the search-path plugin puts the project's conf/ and config_dir before athanor's own
        problem = check_group_choices(overrides)
        if problem:
            raise ConfigError(problem)
        prepare_hydra()
        with initialize_config_dir(config_dir=str(athanor_conf()), version_base="1.3"):
            cfg = hydra_compose(
                config_name=config_name, overrides=overrides, return_hydra_config=True
            )
            if sources is not None:
                sources.update(attribute(config_name, overrides))
            return cfg
    except HydraException as err:
        raise ConfigError(f"Could not compose the config: {err}") from err
    finally:
        api_config_dir.clear()


def compose(
    overrides: list[str] | None = None,
    config_dir: str | Path | None = None,
    config_name: str = "train",
    provenance: bool = False,
) -> dict[str, Any]:
    """The composed config as plain data, exactly as ``train <overrides>`` would see it;
    ``provenance=True`` also prints every key with where its value came from."""
    sources: dict[str, str] = {}
    cfg = _hydra_compose(
        list(overrides or []), config_dir, config_name, sources if provenance else None
    )
    config = job_config(cfg)
    if provenance:
        print(config_provenance.table(config_provenance.provenance(config, sources)), end="")
    return config


def fit(overrides: list[str] | None = None, config_dir: str | Path | None = None) -> dict[str, Any]:
    """Train in this process as ``train <overrides>`` would; returns the run's summary dict.
    A bad config raises ``athanor.ConfigError`` (nothing calls sys.exit)."""
    from omegaconf import OmegaConf

    from athanor.engine.run import train_run
    from athanor.launch.workers import launch, wants_launch
    from athanor.record.folder import RunDir
    from athanor.record.scratch import remove_scratch

    if not logging.getLogger().handlers:  # a notebook: show the run's lines as `train` would
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    sources: dict[str, str] = {}
    cfg = _hydra_compose(list(overrides or []), config_dir, "train", sources)
    # the resumed run's own config first (a refused change writes nothing), then the claim,
    # as `train` does when the run starts: checked, new, locked
    chosen = Path(OmegaConf.select(cfg, "hydra.run.dir"))  # choosing a folder has no side effects
    composed = job_config(cfg)
    config = resumed_config(
        composed, chosen, list(overrides or []), lambda: compose([], config_dir)
    )
    claim = claim_run_folder(cfg)
    run_dir = claim.folder
    if not config.get("dry_run"):
        hydra_dir = (
            run_dir / claim.hydra_subdir
        )  # what `train` leaves: the config and the overrides
        hydra_dir.mkdir(parents=True, exist_ok=True)
        (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
        (hydra_dir / "overrides.yaml").write_text(OmegaConf.to_yaml(list(overrides or [])))
        config_provenance.save(run_dir, config, sources, resumed=config is not composed)
    try:
        launch(config, run_dir) if wants_launch(config) else train_run(config, run_dir)
        return RunDir(run_dir).read_summary()
    finally:
        remove_scratch(run_dir)
        if claim.lock is not None:
            claim.lock.release()
