"""`resume=` continues the run's own saved config: only what the command line sets differs, a
change to a key of RESUMABLE_KEYS takes effect (read back from last.pt), any other is refused
before anything is written. And the disk policy: keep_steps, a weights-only best.pt that
evaluate / export / model.weights= read and resume refuses, checkpoint_bytes in the summary."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from athanor.errors import ConfigError
from athanor.record.folder import RunDir
from athanor.record.resume import (
    RESUMABLE_KEYS,
    OptimizerState,
    config_changes,
    resumable,
    resume_config,
    touched_paths,
)
from conftest import ROOT, cli

# digits: 1437 training images in 5 optimizer steps of 256 (the last, short batch is dropped)
DIGITS = (
    "data=digits",
    "data.batch_size=256",
    "trainer.log_every=1",
    "logger.progress=plain",
    "logger.image_grid=false",
    "logger.plots=false",
    "logger.tensorboard=false",
)
STEPS_PER_EPOCH = 5


def last(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


def files(run: Path) -> dict[str, bytes]:
    """Every file of the run folder (a refused resume adds no `.hydra/resume-*`, no log line)."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def capped(tmp_path_factory) -> Path:
    """A 4-epoch run at lr 0.003 that stopped after 10 of its 20 steps (trainer.max_steps=10)."""
    cwd = tmp_path_factory.mktemp("capped")
    cli(
        "athanor.train",
        *DIGITS,
        "trainer.epochs=4",
        "trainer.max_steps=10",
        "optim.lr=3.0e-3",
        "optim.lr_mult={5: 2.0}",  # the mlp's last layer (module 5) at 2x
        "checkpoint.every_steps=2",
        "hydra.run.dir=run",
        cwd=cwd,
    )
    return cwd / "run"


def copy_of(run: Path, tmp_path: Path) -> Path:
    work = tmp_path / "run"
    shutil.copytree(run, work)
    return work


def groups(checkpoint: dict) -> dict[str, dict]:
    return {
        g.get("name", str(i)): g
        for i, g in enumerate(checkpoint["state"]["optimizer"]["param_groups"])
    }


def test_resume_keeps_the_runs_own_config_and_a_typed_lr_lands_in_the_optimizer(capped, tmp_path):
    saved = last(capped)
    assert saved["state"]["progress"]["step"] == 10 and saved["config"]["trainer"]["epochs"] == 4
    work = copy_of(capped, tmp_path)
    # only the step cap is lifted: epochs=4 and lr=0.003 come back without being typed
    # (today's defaults are 20 epochs and lr 0.001)
    result = cli(
        "athanor.train", f"resume={work}", "trainer.max_steps=null", "optim.lr=0.05", cwd=tmp_path
    )
    summary = RunDir(work).read_summary()
    assert summary["status"] == "completed" and summary["epochs"] == 4
    assert summary["steps"] == 4 * STEPS_PER_EPOCH
    assert summary["resumes"][0]["changes"] == [
        "optim.lr: 0.003 -> 0.05",
        "trainer.max_steps: 10 -> None",
    ]
    final = last(work)
    assert final["config"]["trainer"]["epochs"] == 4 and final["config"]["optim"]["lr"] == 0.05
    assert final["config"]["data"]["batch_size"] == 256  # not today's default of 64
    # the new lr is in the restored groups, lr_mult kept: layer 5 at 2x, the rest at 1x
    base = {name: g["initial_lr"] for name, g in groups(final).items()}
    before = {name: g["initial_lr"] for name, g in groups(saved).items()}
    assert sorted(before.values()) != sorted(base.values())
    for name, lr in base.items():
        assert lr == pytest.approx(before[name] * 0.05 / 0.003)
    assert base["decay_x2"] == pytest.approx(0.1) and base["decay"] == pytest.approx(0.05)
    assert "the optimizer's groups now: decay: base lr 0.05" in result.output
    assert "trainer.epochs" not in " ".join(summary["resumes"][0]["changes"])


def test_a_new_weight_decay_lands_in_the_decay_groups_only(capped, tmp_path):
    work = copy_of(capped, tmp_path)
    result = cli(
        "athanor.train",
        f"resume={work}",
        "optim.lr=6.0e-3",
        "optim.weight_decay=0.2",
        "trainer.max_steps=11",  # one more step
        cwd=tmp_path,
    )
    assert "the optimizer's groups now" in result.output
    final = last(work)
    decays = {name: g["weight_decay"] for name, g in groups(final).items()}
    assert 0.2 in decays.values() and 0.0 in decays.values()  # no-decay groups stay at 0
    assert final["state"]["progress"]["step"] == 11


def test_same_plan_resume_with_a_new_lr_steps_a_schedule_built_for_it(capped, tmp_path):
    work = copy_of(capped, tmp_path)
    # rewind to the step-8 file, same cap, new LR: the schedule is built for the new LR and
    # stepped to step 8 (the saved one holds the old base LRs)
    step8 = work / "checkpoints" / "step_000000008.pt"
    result = cli("athanor.train", f"resume={step8}", "rewind=true", "optim.lr=6.0e-3", cwd=tmp_path)
    assert "schedule is recomputed for the new base LR and stepped to step 8" in result.output
    final = last(work)
    assert final["state"]["progress"]["step"] == 10
    bases = final["state"]["schedule"]["schedule"]["per_step"]["base_lrs"]
    lrs = sorted(g["initial_lr"] for g in final["state"]["optimizer"]["param_groups"])
    assert sorted(bases) == pytest.approx(lrs) and min(bases) == pytest.approx(6.0e-3)


def test_a_change_outside_the_list_is_refused_and_the_folder_is_unchanged(capped, tmp_path):
    work = copy_of(capped, tmp_path)
    before = files(work)
    cases = {
        "model=simple_cnn": "model.name: 'mlp' in the checkpoint, 'simple_cnn' now",
        "data.batch_size=64": "data.batch_size: 256 in the checkpoint, 64 now",
        "seed=5": "seed: 0 in the checkpoint, 5 now",
    }
    for override, message in cases.items():
        result = cli("athanor.train", f"resume={work}", override, cwd=tmp_path, expect=2)
        text = " ".join(result.stderr.split())
        assert message in text and "Traceback" not in result.stderr, text
        assert "optim.lr" in text  # the keys that may change are named
    assert files(work) == before


def test_best_pt_holds_weights_only_and_is_evaluated_but_never_resumed(capped, tmp_path):
    best = capped / "checkpoints" / "best.pt"
    state = torch.load(best, weights_only=True)
    assert state["weights_only"] is True and set(state["state"]) <= {"progress", "model", "ema"}
    assert best.stat().st_size < (capped / "checkpoints" / "last.pt").stat().st_size / 2
    result = cli("athanor.evaluate", f"ckpt={best}", cwd=tmp_path)
    assert "written:" in result.stdout
    cli("athanor", "export", str(best), str(tmp_path / "model.pt"), cwd=tmp_path)
    exported = torch.load(tmp_path / "model.pt", weights_only=True)
    assert exported.keys() == state["state"]["model"].keys()
    refused = cli("athanor.train", f"resume={best}", cwd=tmp_path, expect=2)
    text = " ".join(refused.stderr.split())
    assert "weights only" in text and "last.pt" in text and "Traceback" not in refused.stderr
    # a new run starts from them
    cli(
        "athanor.train",
        *DIGITS,
        f"model.weights={best}",
        "trainer.max_steps=1",
        "hydra.run.dir=new",
        cwd=tmp_path,
    )
    assert RunDir(tmp_path / "new").read_summary()["status"] == "completed"


def test_keep_steps_prunes_and_checkpoint_bytes_matches_the_files(capped):
    folder = capped / "checkpoints"
    steps = sorted(p.name for p in folder.glob("step_*.pt"))
    assert steps == ["step_000000008.pt", "step_000000010.pt"]  # 2, 4, 5, 6 pruned (keep_steps=2)
    inodes = {p.stat().st_ino: p.stat().st_size for p in folder.glob("*.pt")}
    summary = RunDir(capped).read_summary()
    assert summary["checkpoint_bytes"] == sum(inodes.values()) > 0
    assert (
        f"checkpoints: {summary['checkpoint_bytes'] / 2**20:.1f} MB"
        in (capped / "train.log").read_text()
    )


def test_resume_config_takes_typed_paths_from_today_and_the_rest_from_the_run():
    saved = {
        "seed": 0,
        "resume": None,
        "model": {"name": "resnet", "depth": 18},
        "optim": {"name": "adamw", "lr": 0.003, "lr_mult": {"fc": 2.0}, "old_key": 1},
        "trainer": {"epochs": 200},
    }
    today = {
        "seed": 0,
        "resume": "run",
        "model": {"name": "mlp", "hidden": [8]},
        "optim": {"name": "adamw", "lr": 0.05, "lr_mult": {}, "betas": [0.9, 0.999]},
        "trainer": {"epochs": 20, "max_steps": None},
    }
    config = resume_config(saved, today, ["optim.lr"])
    assert config["model"] == {"name": "resnet", "depth": 18}  # not mixed with mlp's keys
    assert config["trainer"] == {"epochs": 200, "max_steps": None}  # a new key: its default
    assert config["optim"] == {
        "name": "adamw",
        "lr": 0.05,
        "lr_mult": {"fc": 2.0},
        "betas": [0.9, 0.999],
    }  # old_key (no longer a setting) dropped
    assert config["resume"] == "run"
    # what the command line changed, against the config composed without it; another group
    # option (model=mlp over the default resnet) is one path: the whole node
    base = {**today, "resume": None, "model": saved["model"], "optim": {**today["optim"]}}
    base["optim"]["lr"] = 0.001
    assert touched_paths(base, today) == ["model", "optim.lr", "resume"]
    # a run saved by an older athanor: keys added or dropped since are no change of the run
    older = {"model": {"name": "mlp"}, "checkpoint": {"keep": 1}}
    now = {"model": {"name": "mlp"}, "checkpoint": {"keep_steps": 2}}
    assert config_changes(older, resume_config(older, now, []), Path("x")) == [
        "checkpoint.keep: 1 -> (absent)",
        "checkpoint.keep_steps: (absent) -> 2",
    ]
    with pytest.raises(ConfigError, match="model.name: 'mlp' in the checkpoint, 'cnn' now"):
        config_changes(older, {**now, "model": {"name": "cnn"}}, Path("x"))


def test_optimizer_state_scales_each_group_and_keeps_no_decay(tmp_path):
    model = torch.nn.Linear(3, 2)

    def optimizer(lr: float, wd: float) -> torch.optim.Optimizer:
        opt = torch.optim.AdamW(
            [
                {"params": [model.weight], "lr": lr * 10, "weight_decay": wd, "name": "head"},
                {"params": [model.bias], "lr": lr, "weight_decay": 0.0, "name": "no_decay"},
            ]
        )
        for g in opt.param_groups:
            g["initial_lr"] = g["lr"]
        return opt

    old = optimizer(0.001, 0.05)
    for g in old.param_groups:
        g["lr"] *= 0.5  # half-way down its schedule
    new = optimizer(0.004, 0.1)
    OptimizerState(new).load_state_dict(old.state_dict())
    head, bias = new.param_groups
    assert (head["initial_lr"], head["lr"], head["weight_decay"]) == pytest.approx(
        (0.04, 0.02, 0.1)
    )
    assert (bias["initial_lr"], bias["lr"], bias["weight_decay"]) == pytest.approx((4e-3, 2e-3, 0))


def test_the_readme_lists_every_key_a_resume_may_change():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("**What may change on resume**", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r"`([a-z_.*]+)`", section))
    missing = [key for key in RESUMABLE_KEYS if key not in listed]
    assert not missing, f"README's 'What may change on resume' lacks {missing}"
    assert resumable("logger.wandb.mode") and not resumable("model.name")
    assert not resumable("optim.name") and not resumable("data.batch_size")


def test_a_new_lr_lands_where_a_run_started_with_it_would_be():
    """ScheduleState with other base LRs than the saved ones: the schedule built for the new LR,
    stepped to the saved step, gives the LRs of a run that had that LR from the start (torch's
    public step() only: no saved base_lrs rewritten, no private attribute read)."""
    from athanor.engine.state import Progress
    from athanor.optim.schedulers import build_schedule
    from athanor.record.resume import ScheduleState

    spec = {"name": "cosine", "warmup_steps": 3}
    plan = {"steps_per_epoch": 5, "total_steps": 20}

    def run(lr: float, steps: int) -> tuple[torch.optim.Optimizer, ScheduleState]:
        optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=lr)
        schedule = build_schedule(spec, optimizer, total_steps=20, steps_per_epoch=5)
        state = ScheduleState(schedule, optimizer, plan, Progress(step=steps))
        for _ in range(steps):
            optimizer.step()
            schedule.step()
        return optimizer, state

    _, old = run(0.1, 7)
    straight, _ = run(0.4, 7)
    resumed, fresh = run(0.4, 0)
    fresh.position.step = 7  # as the restored progress says
    fresh.load_state_dict(old.state_dict())
    assert [g["lr"] for g in resumed.param_groups] == [g["lr"] for g in straight.param_groups]
    # the same base LRs: the saved schedule itself is loaded
    _, same = run(0.1, 0)
    same.load_state_dict(old.state_dict())
    assert same.schedule.state_dict() == old.schedule.state_dict()


def test_the_resume_command_survives_a_shell_whatever_the_path():
    import shlex

    from athanor.record.folder import resume_command

    command = resume_command(Path("outputs/my run's (2)"), "rewind=true")
    assert shlex.split(command) == ["train", "resume=outputs/my run's (2)", "rewind=true"]
    assert resume_command("outputs/x") == "train resume=outputs/x"  # plain paths stay plain


@pytest.mark.parametrize(
    ("progress", "trainer", "said"),
    [
        ({"epoch": 231, "step": 2310}, {"epochs": 60}, "`train resume=run trainer.epochs=241`"),
        ({"epoch": 1, "step": 10}, {"epochs": 4, "max_steps": 10}, "trainer.max_steps=null`"),
        ({"epoch": 2, "step": 20, "stop_reason": "early_stopping"}, {"epochs": 4}, "stopped early"),
    ],
)
def test_a_resume_that_trains_nothing_is_refused_and_auto_is_not(tmp_path, progress, trainer, said):
    from athanor.record.resume import check

    path = tmp_path / "run" / "checkpoints" / "step_000000010.pt"
    path.parent.mkdir(parents=True)
    config = {"resume": "run", "trainer": trainer}
    checkpoint = {"config": config, "state": {"progress": progress}}
    with pytest.raises(ConfigError, match="Nothing to resume") as refused:
        check(checkpoint, path, config)
    assert said in str(refused.value) and f"`train model.weights={path}`" in str(refused.value)
    assert check(checkpoint, path, {**config, "resume": "auto"}) == []  # a requeue: no word
