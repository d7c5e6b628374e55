"""The Optuna study behind ``hparams_search=``: ask trials, run them as sweep jobs, report each
epoch's validation metric to the pruner, tell the results. The study lives in a database
(sqlite by default), so running the same search again continues it: trial numbers go on, the
sampler sees every finished trial, and several machines can share one study through one URL.

The search space arrives as plain descriptions (the CLI parses Hydra's ``choice``/``interval``/
``range``/``tag(log, ...)`` syntax): ``{"choice": [...]}`` or
``{"low": a, "high": b, "log": bool, "int": bool}``.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from athanor.errors import ConfigError
from athanor.record.folder import RunDir
from athanor.sweep.manifest import COMPLETED, PRUNED, Entry
from athanor.sweep.pool import Job, Watch
from athanor.sweep.storage import check_same_search, open_study

log = logging.getLogger("athanor.sweep")

RunBatch = Callable[[list[list[str]], list[int], Watch], list[Entry]]


def distribution(key: str, space: dict[str, Any]) -> optuna.distributions.BaseDistribution:
    if "choice" in space:
        return optuna.distributions.CategoricalDistribution(list(space["choice"]))
    low, high, log_scale = space["low"], space["high"], bool(space.get("log"))
    if space.get("int"):
        return optuna.distributions.IntDistribution(int(low), int(high), log=log_scale)
    return optuna.distributions.FloatDistribution(float(low), float(high), log=log_scale)


def make_sampler(spec: dict[str, Any] | None) -> optuna.samplers.BaseSampler:
    spec = dict(spec or {})
    name = spec.pop("name", "tpe")
    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    if name not in samplers:
        raise ConfigError(f"hydra.sweeper.sampler.name={name!r}: valid samplers are tpe, random.")
    if name == "random":
        spec.pop("n_startup_trials", None)
    return samplers[name](**spec)


def make_pruner(spec: dict[str, Any] | None) -> optuna.pruners.BasePruner:
    spec = dict(spec or {})
    name = spec.pop("name", None) or "none"
    pruners = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
    }
    if name not in pruners:
        raise ConfigError(
            f"hydra.sweeper.pruner.name={name!r}: valid pruners are none, median, hyperband."
        )
    accepted = inspect.signature(pruners[name]).parameters  # keys of the other pruners drop
    return pruners[name](**{k: v for k, v in spec.items() if k in accepted})


def _records(folder: Path) -> list[dict[str, Any]]:
    try:
        lines = (folder / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return out


class StudyDriver:
    def __init__(
        self, settings: dict[str, Any], fixed: list[str], space: dict[str, dict], monitor: str
    ) -> None:
        self.settings, self.fixed, self.monitor = settings, fixed, monitor
        self.distributions = {k: distribution(k, v) for k, v in space.items()}
        direction = settings.get("direction", "maximize")
        if direction not in ("maximize", "minimize"):
            raise ConfigError(
                f"hydra.sweeper.direction={direction!r}: valid directions are maximize, minimize."
            )
        for key in ("n_trials", "n_jobs"):  # before the study is opened: nothing is written
            value = settings.get(key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(
                    f"hydra.sweeper.{key}={value!r}: it must be a whole number >= 1 "
                    "(n_trials: the trials to run, n_jobs: the trials run at a time)."
                )
        name, url = settings.get("study_name") or "athanor", settings.get("storage")
        # the same storage and name: the study continues, if it searches the same way
        self.study = open_study(url, name, direction)
        check_same_search(self.study, direction, self.distributions, url)
        # a seeded sampler starts again from the same draws: offset the seed by the trials the
        # study has, so a continued study proposes new points, not its first ones again
        sampler = dict(settings.get("sampler") or {})
        if sampler.get("seed") is not None:
            sampler["seed"] = int(sampler["seed"]) + len(self.study.trials)
        self.study.sampler = make_sampler(sampler)
        self.study.pruner = make_pruner(settings.get("pruner"))
        self.trials: dict[int, optuna.Trial] = {}
        self.reported: dict[int, set[int]] = {}

    def overrides(self, trial: optuna.Trial) -> list[str]:
        return [*self.fixed, *(f"{k}={v}" for k, v in trial.params.items())]

    def watch(self, job: Job) -> bool:
        """Report each new epoch's validation metric; True when the pruner stops the trial."""
        trial = self.trials.get(job.entry.index)
        if trial is None:
            return False
        seen = self.reported.setdefault(trial.number, set())
        for record in _records(job.folder):
            value, epoch = record.get(self.monitor), record.get("epoch")
            if isinstance(value, int | float) and isinstance(epoch, int) and epoch not in seen:
                seen.add(epoch)
                trial.report(float(value), step=epoch)
                if trial.should_prune():
                    return True
        return False

    def run(self, run_batch: RunBatch) -> list[Entry]:
        n_trials, batch = (
            int(self.settings.get("n_trials", 20)),
            int(self.settings.get("n_jobs") or 1),
        )
        before = len(self.study.trials)
        log.info("study %s: %d trials so far, %d to run", self.study.study_name, before, n_trials)
        entries: list[Entry] = []
        while len(entries) < n_trials:
            asked = [
                self.study.ask(self.distributions)
                for _ in range(min(batch, n_trials - len(entries)))
            ]
            self.trials = {t.number: t for t in asked}
            done = run_batch(
                [self.overrides(t) for t in asked], [t.number for t in asked], self.watch
            )
            for trial, entry in zip(asked, done, strict=True):
                self._tell(trial, entry)
            entries.extend(done)
        return entries

    def _tell(self, trial: optuna.Trial, entry: Entry) -> None:
        from athanor.sweep.manifest import RUNNING

        if entry.status == PRUNED:
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return
        value = _best(Path(entry.folder), self.monitor)
        if entry.status == COMPLETED and value is not None and math.isfinite(value):
            self.study.tell(trial, value)
        elif entry.status != RUNNING:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def summary(self) -> str:
        trials = self.study.trials
        counts = {
            s.name.lower(): sum(t.state == s for t in trials) for s in optuna.trial.TrialState
        }
        text = f"study {self.study.study_name}: {len(trials)} trials " + ", ".join(
            f"{n} {k}" for k, n in counts.items() if n
        )
        best = self.best()
        if best:
            text += f"; best trial #{best['number']}: {self.monitor}={best['value']:.4f} {best['params']}"
        return text

    def best(self) -> dict[str, Any] | None:
        try:
            t = self.study.best_trial
        except ValueError:  # no completed trial yet
            return None
        return {"number": t.number, "value": t.value, "params": t.params}


def _best(folder: Path, monitor: str) -> float | None:
    summary = RunDir(folder).read_summary()
    value = (summary.get("best") or {}).get(summary.get("monitor") or monitor)
    return None if value is None else float(value)
