"""Sweeps a GPU server deserves (issue 14): the pool launcher's slots and real job processes,
failures kept inside their job, restarted sweeps, Hydra's sweep syntax in the pre-check, sweeps
refused under torchrun, and the Optuna study (resumed on sqlite, pruned trials)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from conftest import CONF, cli

# 2 optimizer steps and 2 validation batches per epoch: a job is mostly its process start
TINY = (
    "trainer.epochs=2",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "logger.tensorboard=false",
    "logger.progress=plain",
)


# ---- slots -------------------------------------------------------------------------------------


def test_slots_share_gpus_or_group_them_or_split_the_cpu():
    from athanor.sweep.slots import plan_slots

    two_each = plan_slots(["0", "1"], jobs_per_device=2, cpus=8)
    assert [s.devices for s in two_each] == [("0",), ("0",), ("1",), ("1",)]
    assert {s.threads for s in two_each} == {2}
    ddp = plan_slots(["0", "1", "2", "3", "4"], gpus_per_job=2, cpus=8)
    assert [s.devices for s in ddp] == [("0", "1"), ("2", "3")]  # GPU 4 alone cannot hold a job
    cpu = plan_slots([], jobs_per_device=2, cpus=2)
    assert [(s.devices, s.threads) for s in cpu] == [((), 1), ((), 1)]
    assert cpu[0].env()["CUDA_VISIBLE_DEVICES"] == "" and cpu[0].env()["OMP_NUM_THREADS"] == "1"


def test_slots_refuse_impossible_shares():
    from athanor.errors import ConfigError
    from athanor.sweep.slots import plan_slots

    with pytest.raises(ConfigError, match="gpus_per_job=4 but only 2"):
        plan_slots(["0", "1"], gpus_per_job=4)
    with pytest.raises(ConfigError, match="choose one"):
        plan_slots(["0", "1"], jobs_per_device=2, gpus_per_job=2)


# ---- the pre-check accepts Hydra's sweep syntax --------------------------------------------------


@pytest.mark.parametrize(
    "arg",
    [
        "experiment=glob(*)",
        "data=glob(*,exclude=cifar*)",
        "optim=choice(sgd,adamw)",
        "optim=sort(adamw,sgd)",
        "optim=tag(fast,choice(sgd,adamw))",
        "seed=range(0,3)",
        "optim='sgd',\"adamw\"",
        "model=interval(0,1)",
    ],
)
def test_hydra_sweep_syntax_passes_the_group_check(arg):
    from athanor.cli.compose import check_group_choices

    assert check_group_choices([arg], CONF) is None


@pytest.mark.parametrize("arg", ["optim=sgd,adamww", "optim=choice(sgd,adamww)", "optim='adamww'"])
def test_a_typo_in_a_sweep_list_is_still_caught_with_the_suggestion(arg):
    from athanor.cli.compose import check_group_choices

    message = check_group_choices([arg], CONF)
    assert message and "'adamww'" in message and "Did you mean 'adamw'?" in message


def test_glob_sweep_runs_past_the_check(tmp_path):
    """What a new user tried: `experiment=glob(...)` reaches Hydra, which expands it."""
    result = cli("athanor.train", "-m", "experiment=glob(digits*)", "dry_run=true", cwd=tmp_path)
    said = result.output
    assert "job 0 started on cpu: experiment=digits_quick" in said and "names no file" not in said


# ---- sweeps under torchrun ---------------------------------------------------------------------


def test_a_sweep_under_torchrun_is_refused_with_the_form_that_works(tmp_path):
    """torchrun sets WORLD_SIZE in every worker; the sweep stops before its first job."""
    env = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": "0"}
    result = cli("athanor.train", "-m", "optim.lr=0.1,0.05", cwd=tmp_path, env=env, expect=2)
    said = " ".join(result.output.split())  # the paragraph is wrapped at 100 columns
    assert "cannot run inside torchrun" in said
    assert "train -m optim.lr=0.1,0.05 distributed.nproc_per_node=2" in said
    assert "hydra.launcher.gpus_per_job=2" in said and "Traceback" not in said
    assert not (tmp_path / "outputs").exists()


def test_one_run_under_torchrun_is_not_refused():
    from athanor.cli.train import sweep_under_torchrun

    assert sweep_under_torchrun(["optim.lr=0.1"], {"WORLD_SIZE": "2"}) is None
    assert sweep_under_torchrun(["-m", "optim.lr=0.1,0.2"], {}) is None
    assert sweep_under_torchrun(["hparams_search=digits_optuna"], {"WORLD_SIZE": "4"})


# ---- the pool launcher: real processes -----------------------------------------------------------


POOL = ("hydra.launcher.jobs_per_device=2", "hydra.launcher.devices=[0,1]")  # the default launcher
FAKE_GPUS = {"CUDA_VISIBLE_DEVICES": "0,1"}  # the ids the pool may hand out (no GPU is used)


def _manifest(sweep: Path) -> dict[str, dict]:
    jobs = json.loads((sweep / "sweep_manifest.json").read_text())["jobs"]
    return {" ".join(e["overrides"]): e for e in jobs.values()}


def _lr(entry: dict) -> str:
    return next(o for o in entry["overrides"] if o.startswith("optim.lr=")).split("=")[1]


@pytest.fixture(scope="module")
def pool_sweep(tmp_path_factory):
    """Three jobs on four slots (two per fake GPU), one of them failing while it trains (a NaN
    loss: its run folder and summary stay, unlike a config error's); then the same again. The
    pool is the default launcher (issue 24): not named here."""
    cwd = tmp_path_factory.mktemp("pool")
    lrs = "optim.lr=0.1,1.0e+30,0.05"  # Hydra's sweeper writes the override back as 1e+30
    args = ("-m", *POOL, *TINY, "optim=sgd", lrs, "hydra.sweep.dir=outputs/lr-study")
    first = cli("athanor.train", *args, cwd=cwd, expect=1, env=FAKE_GPUS)
    sweep = cwd / "outputs" / "lr-study"
    before = {_lr(e): e for e in _manifest(sweep).values()}
    stamps = {
        lr: (Path(e["folder"]) / "summary.json").stat().st_mtime_ns for lr, e in before.items()
    }
    second = cli("athanor.train", *args, cwd=cwd, expect=1, env=FAKE_GPUS)
    return sweep, first, before, stamps, second


@pytest.mark.slow
def test_pool_jobs_overlap_each_on_its_own_devices(pool_sweep):
    sweep, first, before, _, _ = pool_sweep
    good = [before["0.1"], before["0.05"]]
    assert all(e["status"] == "completed" for e in good)
    # side by side: each started before the other ended
    assert good[0]["started"] < good[1]["ended"] and good[1]["started"] < good[0]["ended"]
    devices = []
    for e in good:
        summary = json.loads((Path(e["folder"]) / "summary.json").read_text())
        devices.append(summary["devices"])
    # slots in order: gpu 0, gpu 0, gpu 1, gpu 1 -> the jobs got 0, 0, 1 (the failing one is 2nd)
    failed = json.loads((Path(before["1e+30"]["folder"]) / "summary.json").read_text())
    assert devices + [failed["devices"]] == ["0", "1", "0"]
    assert "sweep: 0 done, 3 running, 0 failed, 0 left" in first.output  # progress as it goes


@pytest.mark.slow
def test_a_failing_job_is_marked_and_named_while_the_others_complete(pool_sweep):
    sweep, first, before, _, _ = pool_sweep
    bad = before["1e+30"]
    assert bad["status"] == "failed" and "NaN" in bad["reason"]
    assert "| failed" in first.output and first.output.count("| completed") == 2  # the table
    assert "Sweep failed: 1 of 3 sweep jobs failed: job 1" in first.output
    assert "Traceback" not in first.stderr


@pytest.mark.slow
def test_a_restarted_sweep_skips_completed_jobs_and_reruns_failed_ones(pool_sweep):
    sweep, _, before, stamps, second = pool_sweep
    after = {_lr(e): e for e in _manifest(sweep).values()}
    for lr in ("0.1", "0.05"):
        assert f"job {before[lr]['index']} already completed, skipped" in second.output
        assert (Path(after[lr]["folder"]) / "summary.json").stat().st_mtime_ns == stamps[lr]
        assert after[lr]["attempts"] == 1
    assert after["1e+30"]["attempts"] == 2 and "job 1 failed before, rerunning it" in second.output
    assert Path(after["1e+30"]["folder"] + ".failed-1").is_dir()  # the first attempt, kept
    assert "3 jobs (1 to run)" in second.output


def test_an_interrupted_job_resumes_in_its_folder(tmp_path):
    """The manifest says running (the sweep was killed): the job runs again with resume=auto in
    the same folder, which continues from its last checkpoint."""
    from athanor.cli.sweep_plugins import job_argv

    argv = job_argv(["optim.lr=0.1"], tmp_path / "0_optim.lr=0.1", 1)
    assert argv[:3] == [sys.executable, "-m", "athanor.train"]
    assert f"hydra.run.dir='{tmp_path}/0_optim.lr=0.1'" in argv and "resume=auto" in argv
    assert "distributed.nproc_per_node=2" in job_argv(["x=1"], tmp_path, 2)


# ---- seeds folded in the report ------------------------------------------------------------------


def _fake_run(folder: Path, overrides: list[str], accs: list[float], status="completed") -> None:
    """A run folder as a run writes it: .hydra/overrides.yaml, metrics.jsonl, summary.json."""
    import yaml

    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    lines = [
        json.dumps({"epoch": i + 1, "val/acc": a, "val/loss": 1 - a}) for i, a in enumerate(accs)
    ]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    summary = {"status": status, "monitor": "val/acc", "epochs": len(accs)}
    (folder / "summary.json").write_text(json.dumps(summary))


def test_report_folds_seeds_into_mean_std_and_n_and_marks_the_best(tmp_path):
    accs = {("0.1", "0"): 0.80, ("0.1", "1"): 0.90, ("0.1", "2"): 0.85, ("0.01", "0"): 0.95}
    accs |= {("0.01", "1"): 0.93}
    for i, ((lr, seed), acc) in enumerate(accs.items()):
        _fake_run(tmp_path / f"{i}_x", [f"optim.lr={lr}", f"seed={seed}"], [acc - 0.1, acc])
    _fake_run(tmp_path / "9_x", ["optim.lr=0.1", "seed=3"], [], status="failed")  # no value
    result = cli("athanor", "report", str(tmp_path), "--wide", cwd=tmp_path)  # values whole
    lines = [line for line in result.stdout.splitlines() if line.startswith("| 0.")]
    assert len(lines) == 2, result.stdout  # one row per configuration, not per run
    best, other = lines
    assert (
        best.startswith("| 0.01")
        and "0.9400 ± 0.0141" in best
        and best.split("|")[-2].strip() == "*"
    )
    assert "| 2 " in best and "| 3 " in other and "0.8500 ± 0.0500" in other
    assert "3 completed, 1 failed" in other  # n counts the seeds with a value
    with (tmp_path / "report.csv").open() as f:
        import csv

        rows = list(csv.DictReader(f))
    assert rows[0]["optim.lr"] == "0.01" and float(rows[0]["best val/acc std"]) == pytest.approx(
        0.01414, abs=1e-4
    )
    assert rows[1]["n"] == "3" and rows[0]["best"] == "*"
    assert "## Every run" in (tmp_path / "report.md").read_text()
    assert len((tmp_path / "report_runs.csv").read_text().splitlines()) == 7


def test_report_without_repeated_seeds_keeps_one_row_per_run(tmp_path):
    for i, lr in enumerate(("0.1", "0.01")):
        _fake_run(tmp_path / f"{i}_x", [f"optim.lr={lr}", "seed=0"], [0.5 + i / 10])
    cli("athanor", "report", str(tmp_path), cwd=tmp_path)
    assert "best val/acc" in (tmp_path / "report.csv").read_text().splitlines()[0]
    assert not (tmp_path / "report_runs.csv").exists()


# ---- the Optuna study ----------------------------------------------------------------------------


SEARCH = (
    "hparams_search=digits_optuna",
    *TINY,
    "hydra.sweeper.sampler.name=random",
    "hydra.sweeper.pruner.name=none",
)


@pytest.mark.slow
def test_an_optuna_study_resumes_on_sqlite_with_new_trials(tmp_path):
    """Run the same search twice on one sqlite file: trial numbers go on, points are new."""
    import optuna

    args = (*SEARCH, "hydra.sweeper.storage=sqlite:///study.db", "hydra.sweeper.n_trials=1")
    first = cli("athanor.train", *args, "hydra.sweep.dir=outputs/a", cwd=tmp_path)
    second = cli("athanor.train", *args, "hydra.sweep.dir=outputs/b", cwd=tmp_path)
    assert "1 trials so far, 1 to run" in second.output
    study = optuna.load_study(study_name="digits_optuna", storage=f"sqlite:///{tmp_path}/study.db")
    trials = study.trials
    assert [t.number for t in trials] == [0, 1]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials), first.output
    assert trials[0].params != trials[1].params  # a new point, not the first draw again
    # the value each trial was told is the best val/acc its run folder records
    (run,) = (tmp_path / "outputs" / "b").glob("1_*")
    summary = json.loads((run / "summary.json").read_text())
    assert trials[1].value == pytest.approx(summary["best"]["val/acc"])
    # the folder is the trial number and a short hash, not every override at full precision;
    # the full overrides are in the manifest and the job's own summary
    assert re.fullmatch(r"1_[0-9a-f]{8}", run.name), run.name
    manifest = json.loads((tmp_path / "outputs" / "b" / "sweep_manifest.json").read_text())
    (entry,) = [e for e in manifest["jobs"].values() if e["folder"].endswith(run.name)]
    for key in trials[1].params:
        assert any(o.startswith(f"{key}=") for o in entry["overrides"]), (key, entry)
        assert any(a.startswith(f"{key}=") for a in summary["argv"]), summary["argv"]
    assert "best trial #" in second.output and "| completed" in second.output


def test_the_pruner_stops_a_trial_worse_than_the_median(tmp_path):
    """Each epoch's validation metric (from the job's metrics.jsonl) is reported; a trial below
    the median of the finished ones is pruned."""
    import optuna

    from athanor.sweep.manifest import Entry
    from athanor.sweep.pool import Job
    from athanor.sweep.study import StudyDriver

    settings = {"pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}}
    space = {"optim.lr": {"low": 1.0e-3, "high": 1.0e-1, "log": True}}
    driver = StudyDriver(settings, [], space, "val/acc")
    good = driver.study.ask(driver.distributions)
    for epoch in (1, 2):
        good.report(0.9, step=epoch)
    driver.study.tell(good, 0.9)
    trial = driver.study.ask(driver.distributions)
    driver.trials = {trial.number: trial}
    folder = tmp_path / "1_trial"
    folder.mkdir()
    job = Job(Entry(trial.number, driver.overrides(trial), str(folder)), [])
    assert driver.watch(job) is False  # nothing logged yet
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val/acc": 0.2}) + "\n")
    assert driver.watch(job) is True
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {1: 0.2}
    assert isinstance(driver.study.pruner, optuna.pruners.MedianPruner)


@pytest.mark.slow
def test_a_pruned_job_is_stopped_and_marked_pruned(tmp_path):
    """The pool stops a job its watcher prunes (SIGTERM: the run stops after its step), and both
    the manifest and the run's summary.json say pruned."""
    from athanor.cli.sweep_plugins import job_argv
    from athanor.sweep.manifest import PRUNED, Entry, Manifest
    from athanor.sweep.pool import Job, Pool
    from athanor.sweep.slots import Slot

    folder = tmp_path / "0_trial"
    overrides = [*TINY, "trainer.epochs=50", "trainer.limit_train_batches=null"]
    job = Job(Entry(0, overrides, str(folder)), job_argv(overrides, folder, 1))
    seen = lambda j: (j.folder / "metrics.jsonl").exists()  # noqa: E731 - prune after epoch 1
    (entry,) = Pool([Slot((), 1)], Manifest(tmp_path), watch=seen).run([job])
    summary = json.loads((folder / "summary.json").read_text())
    assert entry.status == PRUNED and summary["status"] == PRUNED
    assert summary["epochs"] < 50


def test_without_optuna_hparams_search_names_the_extra(tmp_path):
    """A machine without the extra: one paragraph naming it, exit 2, before any trial."""
    fake = tmp_path / "no_optuna" / "optuna"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named optuna')\n")
    env = {"PYTHONPATH": str(fake.parent)}
    result = cli("athanor.train", "hparams_search=digits_optuna", cwd=tmp_path, env=env, expect=2)
    said = " ".join(result.output.split())
    assert "pip install 'athanor[optuna]'" in said and "Traceback" not in said


# ---- out of memory -------------------------------------------------------------------------------


def test_an_out_of_memory_job_is_retried_once_with_the_retry_overrides(tmp_path):
    """Real processes: a job that says CUDA out of memory runs again with the halved batch; a
    second failure is final."""
    from athanor.sweep.manifest import FAILED, Entry, Manifest
    from athanor.sweep.pool import Job, Pool
    from athanor.sweep.slots import Slot

    script = (
        "import sys; print('torch.OutOfMemoryError: CUDA out of memory', sys.argv[1:]); sys.exit(1)"
    )
    job = Job(
        Entry(0, ["x=1"], str(tmp_path / "0")),
        [sys.executable, "-c", script],
        ["data.batch_size=32"],
    )
    (entry,) = Pool([Slot((), 1)], Manifest(tmp_path)).run([job])
    assert entry.status == FAILED and entry.attempts == 2 and "out of memory" in entry.reason
    assert "['data.batch_size=32']" in (tmp_path / "0" / "console.log").read_text()


def test_the_oom_retry_halves_the_batch_and_doubles_accumulation():
    from omegaconf import OmegaConf

    from athanor.cli.sweep_plugins import halved_batch

    cfg = OmegaConf.create({"data": {"batch_size": 64}, "trainer": {"accumulate": 2}})
    assert halved_batch(cfg) == ["data.batch_size=32", "trainer.accumulate=4"]


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_its_job_from_the_last_checkpoint(tmp_path):
    """Ctrl-C (SIGINT to the sweep's process group) after the first epoch: the job checkpoints and stops,
    the manifest says interrupted; the same command again continues it in the same folder."""
    import os
    import signal
    import subprocess
    import time

    from conftest import ROOT

    # Small batches and many epochs: a digits epoch of 64-image batches takes ~50 ms, so the job
    # could finish between the first checkpoint and the signal; this one trains ~4 s after it
    # (idle), and the resumed rest stays short on a loaded machine (1800 steps, not 5400).
    args = ("-m", "hydra/launcher=pool", "trainer.epochs=30", "data.batch_size=8")
    args += ("trainer.limit_train_batches=60",)
    args += ("trainer.limit_val_batches=2", "logger.tensorboard=false", "logger.progress=plain")
    args += ("hydra.sweep.dir=outputs/s",)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "athanor.train", *args]
    sweep = subprocess.Popen(
        argv,
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 300
    while not list(tmp_path.glob("outputs/s/0_*/checkpoints/last.pt")) and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(sweep.pid, signal.SIGINT)
    sweep.communicate(timeout=300)
    (entry,) = _manifest(tmp_path / "outputs" / "s").values()
    assert entry["status"] == "interrupted"
    again = cli("athanor.train", *args, cwd=tmp_path)
    assert "job 0 was interrupted, resuming it" in again.output
    summary = json.loads((Path(entry["folder"]) / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 30 and summary["resumes"]


def test_the_search_space_reads_hydra_sweep_syntax():
    """What conf/hparams_search/ writes (and sweeps on the command line) as Optuna distributions."""
    import optuna

    from athanor.cli.sweep_plugins import _is_sweep, search_space
    from athanor.sweep.study import distribution

    space = search_space(
        {"optim.lr": "tag(log, interval(1.0e-4, 3.0e-2))", "optim": "choice(adamw, sgd)"}
        | {"seed": "0,1", "trainer.epochs": "range(1,4)"}
    )
    lr = distribution("optim.lr", space["optim.lr"])
    assert isinstance(lr, optuna.distributions.FloatDistribution) and lr.log and lr.low == 1.0e-4
    assert space["optim"] == {"choice": ["adamw", "sgd"]} and space["seed"] == {"choice": [0, 1]}
    assert space["trainer.epochs"] == {"choice": [1, 2, 3]}
    assert _is_sweep("seed=0,1") and not _is_sweep("hparams_search=digits_optuna")
