"""Cluster and search configs: the SLURM launcher (hydra-submitit-launcher) and the Optuna search
compose into the real config when their plugins are installed, and are checked as YAML when not;
SLURM tasks get torchrun's rank variables; submitit's local executor runs a real sweep job."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from conftest import CONF, cli, compose

SLURM = CONF / "hydra" / "launcher" / "slurm.yaml"
OPTUNA = CONF / "hydra" / "sweeper" / "optuna_tpe.yaml"
SEARCH = CONF / "hparams_search" / "digits_optuna.yaml"


def compose_hydra(*overrides: str) -> dict:
    """The composed config including its ``hydra`` node (launcher, sweeper), resolved."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from athanor.cli.compose import prepare_hydra

    prepare_hydra()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("train", overrides=list(overrides), return_hydra_config=True)
        return {
            "name": cfg.name,
            "hydra": {
                "launcher": OmegaConf.to_container(cfg.hydra.launcher, resolve=True),
                "sweeper": OmegaConf.to_container(cfg.hydra.sweeper, resolve=False),
            },
        }


def test_slurm_launcher_requeues_with_one_task_per_gpu():
    launcher = yaml.safe_load(SLURM.read_text())
    assert launcher["defaults"] == ["submitit_slurm"]
    assert launcher["tasks_per_node"] == "${athanor_slurm_tasks:${.gpus_per_node}}"
    assert launcher["mem_gb"] is None  # the partition's default: small nodes take the job
    assert launcher["max_num_timeout"] > 0 and launcher["additional_parameters"]["requeue"]
    assert launcher["signal_delay_s"] > 0


def test_slurm_launcher_composes_with_the_plugin():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_hydra("hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4")
    launcher = cfg["hydra"]["launcher"]
    assert launcher["_target_"] == "hydra_plugins.athanor_sweeps.SlurmLauncher"
    assert launcher["tasks_per_node"] == 4 and launcher["max_num_timeout"] == 3
    cpu = compose_hydra("hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0")["hydra"]
    assert cpu["launcher"]["tasks_per_node"] == 1  # a CPU partition: one task, not zero
    workers = compose_hydra(
        "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "data.num_workers=3"
    )
    assert workers["hydra"]["launcher"]["cpus_per_task"] == 4  # the process and its 3 workers


def test_optuna_search_space_names_real_keys_and_options():
    search = yaml.safe_load(SEARCH.read_text())
    assert {"override /hydra/sweeper": "optuna_tpe"} in search["defaults"]
    sweeper = yaml.safe_load(OPTUNA.read_text())  # athanor's own sweeper: no hydra-optuna-sweeper
    assert sweeper["_target_"] == "hydra_plugins.athanor_sweeps.OptunaSweeper"
    assert sweeper["storage"].startswith("sqlite:///")
    assert search["hydra"]["sweeper"]["direction"] == "maximize"
    assert search["checkpoint"] == {"monitor": "val/acc", "mode": "max"}
    config = compose()
    for key, space in search["hydra"]["sweeper"]["params"].items():
        if (CONF / key).is_dir():  # a group choice: every option is a file of the group
            options = space.removeprefix("choice(").removesuffix(")").split(",")
            assert all((CONF / key / f"{o.strip()}.yaml").is_file() for o in options), space
            continue
        node = config
        for part in key.split("."):
            assert part in node, f"hparams_search names {key}, which the config does not have"
            node = node[part]


def test_optuna_search_composes_with_the_plugin():
    cfg = compose_hydra("hparams_search=digits_optuna")
    assert cfg["hydra"]["sweeper"]["_target_"].endswith("OptunaSweeper")
    assert cfg["hydra"]["sweeper"]["n_trials"] == 16 and cfg["name"] == "digits_optuna"


def test_pool_launcher_composes_with_its_keys():
    cfg = compose_hydra("hydra/launcher=pool", "hydra.launcher.jobs_per_device=2")
    launcher = cfg["hydra"]["launcher"]
    assert launcher["_target_"] == "hydra_plugins.athanor_sweeps.PoolLauncher"
    assert launcher["jobs_per_device"] == 2 and launcher["gpus_per_job"] == 1
    assert launcher["devices"] is None and launcher["oom_retry_batch_halving"] is False


def test_the_optuna_extra_resolves_to_what_is_installed():
    """The extra's pins hold for the set the tests run on (optuna 4+, a stable hydra-core)."""
    from importlib import metadata

    import tomllib
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((CONF.parent / "pyproject.toml").read_text())
    extra = [Requirement(r) for r in pyproject["project"]["optional-dependencies"]["optuna"]]
    assert {r.name for r in extra} >= {"optuna", "hydra-core"}
    for req in extra:
        version = metadata.version(req.name)
        assert req.specifier.contains(version), f"{req.name} {version} is outside {req}"
    hydra = next(r for r in extra if r.name == "hydra-core")
    assert not hydra.specifier.contains("1.4.0rc3")  # what hydra-optuna-sweeper pulled


def test_slurm_tasks_get_torchrun_variables(monkeypatch):
    pytest.importorskip("submitit")
    from athanor import distributed
    from athanor.cli import resolvers as paths

    environ = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    monkeypatch.setattr(os, "environ", environ)  # what the export writes stays in this test
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": "4",
        "SLURM_PROCID": "3",
        "SLURM_LOCALID": "1",
        "SLURM_NNODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_JOB_NODELIST": "gpu[7-8]",
        "SLURM_STEP_NODELIST": "gpu[7-8]",
        "SLURM_NTASKS_PER_NODE": "2",
    }
    environ.update(slurm)
    environ.pop("SUBMITIT_EXECUTOR", None)
    assert paths._rank() == 3  # before RANK exists, the run-folder resolver already knows
    distributed.export_slurm_env()
    assert distributed.env_dist() == distributed.Dist(rank=3, local_rank=1, world=4)
    assert os.environ["MASTER_ADDR"] == "gpu7" and int(os.environ["MASTER_PORT"]) > 0


@pytest.mark.slow
def test_submitit_local_runs_a_sweep_job_in_its_own_process(tmp_path):
    """The cluster path without a cluster: the job runs in a process submitit starts, re-composes
    the config there and still writes into the folder the sweep announced."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = cli(
        "athanor.train",
        "-m",
        "hydra/launcher=local_ddp",
        "trainer.epochs=1",
        "trainer.limit_train_batches=2",
        "logger.tensorboard=false",
        "checkpoint.enabled=false",
        "optim.lr=2.0e-3",
        cwd=tmp_path,
        timeout=300,
    )
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    assert str(sweep.relative_to(tmp_path)) in result.output  # the folder announced...
    (job,) = [p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")]
    summary = json.loads((job / "summary.json").read_text())  # ...is where the job wrote
    assert job.name.startswith("0_") and summary["status"] == "completed"
    assert list((sweep / ".submitit").rglob("*_result.pkl"))
    # the job is recorded as the user's command, not as submitit's `_submit.py <folder>`
    assert summary["command"].startswith("train ") and "_submit" not in summary["command"]
