"""Opening the Optuna study behind ``hparams_search=``, before the first trial: a storage that
cannot be used (not a URL, an unknown scheme, a missing driver, a file that is not a database, a
read-only one, a server out of reach) is one paragraph naming the URL and the fix; a study that
exists with another direction or another search space is refused, naming both; and workers that
create the same database at the same moment (several machines starting on an empty PostgreSQL)
retry instead of failing on each other's tables.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import optuna
import sqlalchemy.exc
from sqlalchemy.engine import make_url

from athanor.errors import ConfigError

log = logging.getLogger("athanor.sweep")

# what two workers creating the same tables at once see (PostgreSQL's UniqueViolation on
# pg_type, sqlite's "table ... already exists", a version row inserted twice), never a user error
RACE = ("already exists", "duplicate key", "UniqueViolation", "database is locked")
ATTEMPTS = 8

EXAMPLES = (
    "sqlite:///optuna.db (a file in the current folder) or "
    "postgresql+psycopg2://user@dbhost/optuna (pip install 'athanor[postgres]')"
)


def shown(url: str | None) -> str:
    """The URL as it may be printed: a password becomes ***."""
    if url is None:
        return "memory (no storage)"
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def _said(err: BaseException) -> str:
    """The database's own first line (not SQLAlchemy's wrapping and its link)."""
    orig = getattr(err, "orig", None) or err
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


def storage_problem(url: str | None, err: BaseException) -> str:
    """One paragraph: what is wrong with ``hydra.sweeper.storage`` and how to fix it."""
    where = f"hydra.sweeper.storage={shown(url)!r}"
    said = _said(err)
    if isinstance(err, ImportError):  # optuna's "Failed to import DB access module"
        module = getattr(err.__cause__, "name", None) or said
        return (
            f"{where}: the database driver for this URL is not installed (no module {module!r}). "
            "For PostgreSQL: pip install 'athanor[postgres]' and write the URL as "
            "postgresql+psycopg2://user@dbhost/optuna (a bare postgresql:// asks SQLAlchemy for "
            "psycopg 3)."
        )
    if isinstance(err, sqlalchemy.exc.ArgumentError) and not isinstance(
        err, sqlalchemy.exc.NoSuchModuleError
    ):
        return f"{where} is not a database URL ({said}). Write a URL such as {EXAMPLES}."
    if isinstance(err, sqlalchemy.exc.NoSuchModuleError):
        scheme = str(url).partition("://")[0]
        return f"{where}: {scheme!r} is not a database SQLAlchemy knows ({said}). Use {EXAMPLES}."
    if "file is not a database" in said:
        return (
            f"{where} names a file that is not a database ({said}). Point the storage at a new "
            "file or at a study's database, e.g. sqlite:///optuna.db."
        )
    if "readonly" in said or "read-only" in said:
        return (
            f"{where} is read-only ({said}): the study writes every trial. Make it writable, or "
            "give a storage you can write to, e.g. sqlite:///optuna.db."
        )
    if "unable to open database file" in said:
        return f"{where}: the file cannot be opened ({said}); does its folder exist?"
    if isinstance(err, sqlalchemy.exc.OperationalError):
        return (
            f"{where}: the database cannot be reached ({said}). Is the server running, and are "
            "the host, port, user and database in the URL right?"
        )
    return f"{where}: the database refused the study ({type(err).__name__}: {said})."


def open_study(url: str | None, name: str, direction: str) -> optuna.Study:
    """The study ``name`` in ``url``, created when new; the creation race is retried."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return optuna.create_study(
                study_name=name, storage=url, direction=direction, load_if_exists=True
            )
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as err:
            wrapped = isinstance(err, optuna.exceptions.StorageInternalError)
            cause = (err.__cause__ or err) if wrapped else err  # optuna wraps a failed commit
            if attempt < ATTEMPTS and any(s in str(cause) for s in RACE):
                log.info("study %s: another worker is creating the storage, trying again", name)
                time.sleep(random.uniform(0.1, 0.5) * attempt)
                continue
            raise ConfigError(storage_problem(url, cause)) from err
        except ImportError as err:
            raise ConfigError(storage_problem(url, err)) from err
    raise AssertionError("unreachable: the last attempt returns or raises")


def check_same_search(
    study: optuna.Study, direction: str, space: dict[str, Any], url: str | None
) -> None:
    """A study continued by another command must optimize the same way over the same space:
    else its later trials would, say, minimize accuracy, or mix two searches silently."""
    where = f"the study {study.study_name!r} in {shown(url)}"
    had = study.direction.name.lower()
    if had != direction:
        raise ConfigError(
            f"{where} was created to {had} and this search asks to {direction} "
            f"(hydra.sweeper.direction): continue it with direction={had}, or start a new study "
            "with another hydra.sweeper.study_name."
        )
    for trial in study.get_trials(deepcopy=False):
        if not trial.distributions:
            continue  # a trial that failed before it had parameters
        if trial.distributions != space:
            old, new = trial.distributions, space
            diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            shown_diff = "; ".join(
                f"{k}: {_range(old.get(k))} in the study, {_range(new.get(k))} now" for k in diff
            )
            raise ConfigError(
                f"{where} searched another space (trial #{trial.number}): {shown_diff}. Continue "
                "it with the same hydra.sweeper.params, or start a new study with another "
                "hydra.sweeper.study_name."
            )
        return  # every trial of a study was asked with the same space: one is enough


def _range(dist: optuna.distributions.BaseDistribution | None) -> str:
    if dist is None:
        return "absent"
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return f"choice{tuple(dist.choices)}"
    scale = " log" if getattr(dist, "log", False) else ""
    return f"[{dist.low}, {dist.high}]{scale}"
