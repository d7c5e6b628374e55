"""An Optuna storage that cannot be used, or a study that searched otherwise, is named before the
first trial: one paragraph with the URL and the fix, exit 2, no traceback. The storages are real
(sqlite files, a read-only open, SQLAlchemy's own URL parsing and driver import)."""

from __future__ import annotations

import sys

import pytest

from athanor.errors import ConfigError
from conftest import cli

optuna = pytest.importorskip("optuna")

from athanor.sweep.study import StudyDriver  # noqa: E402 - needs optuna

SPACE = {"optim.lr": {"low": 1.0e-4, "high": 3.0e-2, "log": True}}


def driver(storage: str, direction: str = "maximize", space: dict | None = None) -> StudyDriver:
    settings = {"storage": storage, "study_name": "s", "direction": direction, "n_trials": 1}
    return StudyDriver(settings, [], SPACE if space is None else space, "val/acc")


def refusal(storage: str, **kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        driver(storage, **kwargs)
    return str(caught.value)


def test_a_file_that_is_not_a_database_is_named_with_exit_2_before_any_trial(tmp_path):
    (tmp_path / "notes.txt").write_text("not a database\n")
    result = cli(
        "athanor.train",
        "hparams_search=digits_optuna",
        "hydra.sweeper.storage=sqlite:///notes.txt",
        cwd=tmp_path,
        expect=2,
    )
    said = result.stderr
    assert "Config error: hydra.sweeper.storage='sqlite:///notes.txt'" in said, said
    assert "not a database" in said and "Traceback" not in result.output
    assert not list((tmp_path / "outputs").rglob("summary.json")), "a trial ran"


def test_a_read_only_database_is_named(tmp_path):
    db = tmp_path / "study.db"
    optuna.create_study(study_name="s", storage=f"sqlite:///{db}")
    said = refusal(f"sqlite:///file:{db}?mode=ro&uri=true")  # read-only even for root
    assert "is read-only" in said and str(db) in said


def test_an_unknown_scheme_and_a_plain_path_are_named_with_valid_urls():
    said = refusal("nosql://host/db")
    assert "'nosql' is not a database SQLAlchemy knows" in said and "sqlite:///" in said
    said = refusal("optuna.db")
    assert "'optuna.db' is not a database URL" in said and "sqlite:///optuna.db" in said


def test_a_missing_driver_says_which_extra_installs_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # psycopg 3 absent (import fails)
    said = refusal("postgresql://me:secret@127.0.0.1:1/optuna")
    assert "no module 'psycopg'" in said and "pip install 'athanor[postgres]'" in said
    assert "postgresql+psycopg2://" in said and "secret" not in said  # the password is hidden


def test_a_server_out_of_reach_is_named(tmp_path):
    pytest.importorskip("psycopg2")
    said = refusal("postgresql+psycopg2://me@127.0.0.1:1/optuna")
    assert "cannot be reached" in said and "127.0.0.1:1" in said


def test_a_study_of_the_other_direction_is_refused_naming_both(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    study = driver(url).study
    study.tell(study.ask(driver(url).distributions), 0.9)
    said = refusal(url, direction="minimize")
    assert "created to maximize and this search asks to minimize" in said


def test_a_study_of_another_search_space_is_refused_naming_both(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    first = driver(url)
    first.study.tell(first.study.ask(first.distributions), 0.9)
    wider = {"optim.lr": {"low": 1.0e-5, "high": 3.0e-2, "log": True}}
    said = refusal(url, space=wider)
    assert "optim.lr: [0.0001, 0.03] log in the study, [1e-05, 0.03] log now" in said
    driver(url)  # the same space continues


@pytest.mark.parametrize("setting", ["n_trials=0", "n_trials=-1", "n_jobs=0"])
def test_a_count_of_trials_under_one_is_refused_and_leaves_no_sweep_folder(tmp_path, setting):
    """`n_trials=-1` ran an empty study and exited 0; the sweep folder claimed for it stayed."""
    result = cli(
        "athanor.train",
        "hparams_search=digits_optuna",
        f"hydra.sweeper.{setting}",
        cwd=tmp_path,
        expect=2,
    )
    said = " ".join(result.stderr.split())
    assert f"hydra.sweeper.{setting}: it must be a whole number >= 1" in said, said
    assert "Nothing was written." in said and "Traceback" not in result.output
    assert not list((tmp_path / "outputs" / "multirun").glob("*/*")), "a sweep folder stayed"
