"""The run's trackers as one: ``open_trackers`` builds every tracker of ``logger.trackers`` and
returns a fan-out that forwards each call to all of them. A tracker that fails (a server out of
reach, a full disk) is warned about once and dropped; the run and the other trackers go on, and
the results stay in the run folder. The ids of each tracker's run are kept in <run>/trackers.json,
so a resume reopens the same MLflow / W&B run.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

from athanor.config.flatten import flatten
from athanor.config.settings import LoggerSettings
from athanor.errors import ConfigError
from athanor.observe.trackers.base import TRACKERS, NullTracker, RunInfo, TrackerContext
from athanor.observe.trackers.swept_keys import flat_keys, params_order, swept_keys
from athanor.record.folder import write_json_atomic
from athanor.registry import closest

log = logging.getLogger("athanor")

STATE_FILE = "trackers.json"
LOCAL = ("tensorboard", "none")  # trackers that need no tags, ids or network
EXTRAS = {"mlflow": "mlflow", "wandb": "wandb"}  # tracker -> module its extra installs


class FanOut(NullTracker):
    """Every call goes to every tracker still alive; the first error of one drops it."""

    def __init__(self, trackers: dict[str, NullTracker], run_folder: Path):
        self.trackers, self.run_folder = trackers, run_folder

    def _each(self, method: str, *args: Any) -> None:
        for name in list(self.trackers):
            self._call(name, method, *args)

    def _call(self, name: str, method: str, *args: Any) -> None:
        """``method(*args)`` on tracker ``name``; its first error drops it."""
        try:
            getattr(self.trackers[name], method)(*args)
        except Exception as err:  # noqa: BLE001 - a tracker must never end the run
            self._drop(name, f"{method} failed", err)

    def _drop(self, name: str, what: str, err: Exception) -> None:
        self.trackers.pop(name, None)
        log.warning(
            "tracker %s: %s (%s: %s); the run goes on without it (results stay in %s).",
            name,
            what,
            type(err).__name__,
            err,
            self.run_folder,
        )

    def scalars(self, values: dict[str, float], step: int) -> None:
        self._each("scalars", values, step)

    def params(self, params: dict[str, Any]) -> None:
        self._each("params", params)

    def artifact(self, path: Path) -> None:
        self._each("artifact", path)

    def image(self, tag: str, image: Any, step: int) -> None:
        self._each("image", tag, image, step)

    def figure(self, tag: str, figure: Any, step: int) -> None:
        self._each("figure", tag, figure, step)

    def histogram(self, tag: str, values: Any, step: int) -> None:
        self._each("histogram", tag, values, step)

    def text(self, tag: str, text: str, step: int) -> None:
        self._each("text", tag, text, step)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        self._each("hparams", hparams, metrics)

    def flush(self) -> None:
        self._each("flush")

    def finish(self, status: str) -> None:
        """The run's record as artifacts, then each tracker's final status."""
        for path in (self.run_folder / "summary.json", self.run_folder / "plots"):
            if path.exists():
                self.artifact(path)
        self._each("finish", status)
        self.trackers = {}


def check_trackers(settings: LoggerSettings) -> None:
    """Before any work: every name is registered and its package installed (ConfigError)."""
    _import_builtins()
    for name in settings.trackers:
        if name not in TRACKERS:
            valid = ", ".join(TRACKERS.names())
            raise ConfigError(
                f"logger.trackers={list(settings.trackers)}: unknown tracker {name!r}."
                f"{closest(name, TRACKERS.names())} Valid trackers: {valid}."
            )
        module = EXTRAS.get(name)
        if module and importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"logger.trackers includes {name!r} but the {module} package is not installed: "
                f"pip install 'athanor[{name}]' (or drop {name} from logger.trackers)."
            )


def open_trackers(
    settings: LoggerSettings,
    run_folder: Path,
    *,
    resumed_step: int | None,
    config: dict[str, Any],
) -> FanOut:
    """Start (or, on resume, reopen) every tracker of ``logger.trackers`` for this run."""
    check_trackers(settings)
    names = settings.active_trackers
    saved = _read_state(run_folder)
    run = _run_info(config, run_folder, saved.get("sweep"), remote=set(names) - set(LOCAL))
    trackers: dict[str, NullTracker] = {}
    fan = FanOut(trackers, run_folder)
    for name in names:
        ctx = TrackerContext(settings, run_folder, run, resumed_step, saved.get(name, {}))
        try:
            trackers[name] = TRACKERS.get(name).builder(ctx)
        except ConfigError:
            raise
        except Exception as err:  # noqa: BLE001 - no server, no login: warn and go on
            fan._drop(name, "could not start", err)
    params = params_order(flatten(config), run.swept)
    for name in [n for n in trackers if not saved.get(n)]:
        fan._call(name, "params", params)  # a resumed run keeps its first ones (MLflow: immutable)
    state = {n: t.saved_state() for n, t in trackers.items() if t.saved_state()}
    if state or run.group:
        _write_state(
            run_folder, {**saved, **state, "sweep": {"swept": run.swept, "group": run.group}}
        )
    return fan


def _run_info(
    config: dict[str, Any], run_folder: Path, sweep: dict | None, *, remote: set[str]
) -> RunInfo:
    if sweep is None:
        keys, group = swept_keys(run_folder)
        sweep = {"swept": flat_keys(keys, flatten(config)), "group": group}
    tags: dict[str, str] = {}
    if remote:  # git costs a subprocess: only for trackers that show tags
        from athanor.record.environment import environment

        info = environment()
        tags = {
            "athanor.git_commit": str(info["git"].get("commit")),
            "athanor.command": info["command"],
            "athanor.run_folder": str(run_folder.resolve()),
            "athanor.host": info["host"],
        }
    return RunInfo(
        config=config,
        name=run_folder.name,
        tags=tags,
        swept=tuple(sweep.get("swept") or ()),
        group=sweep.get("group"),
    )


def _read_state(run_folder: Path) -> dict[str, Any]:
    try:
        return json.loads((run_folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_state(run_folder: Path, state: dict[str, Any]) -> None:
    write_json_atomic(run_folder / STATE_FILE, state)


def _import_builtins() -> None:
    """Register the built-in trackers (their heavy packages load only when one is opened)."""
    from athanor.observe.trackers import mlflow, null, tensorboard, wandb  # noqa: F401
