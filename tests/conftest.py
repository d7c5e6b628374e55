"""Shared fixtures: run the real CLI in a temp folder, compose the real config in-process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker and the processes it starts get their share of the cores.

    torch's default (one OpenMP thread per core in every process) oversubscribes the cores once
    two workers each run a training: measured on 2 cores, two such runs side by side took 118 s
    each against 25 s alone, and 33 s each with one thread per worker.
    """
    if sys.dont_write_bytecode and "PYTEST_XDIST_WORKER" not in os.environ:
        # PYTHONDONTWRITEBYTECODE (as on this project's CI image) would make every `train`
        # the tests start compile athanor's ~200 modules from source, ~0.4 s a process; an
        # installed athanor has its bytecode from pip. Written once, by the controller.
        import compileall

        compileall.compile_dir(str(ROOT / "src"), quiet=1)
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and "OMP_NUM_THREADS" not in os.environ:  # a user's own setting wins
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by every subprocess
        import torch

        torch.set_num_threads(threads)  # this worker's own in-process tests


# test modules with a module-scoped fixture (a finished run, a sweep, a built wheel) that their
# tests share, as rootdir-relative paths (the node ids' first part)
SHARED_FIXTURE_MODULES = frozenset(
    f"tests/{p.name}"
    for p in Path(__file__).parent.glob("test_*.py")
    if 'scope="module"' in p.read_text()
)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist; absent with `-p no:xdist`
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadgroup``, and each module of SHARED_FIXTURE_MODULES runs whole on one worker,
    so its fixture is built once, not once per worker; every other test goes to whichever worker
    is free. (xdist 3.8 cannot read xdist_group marks under pytest 9: it renames the node ids
    through ``item._nodeid``, which pytest 9 no longer reads, so the scope is chosen here.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SharedFixtureScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return module if module in SHARED_FIXTURE_MODULES else super()._split_scope(nodeid)

    return SharedFixtureScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under xdist, the modules with slow tests go first and the quick ones fill the end, so no
    worker is left alone with a minutes-long module at the end. A module's tests stay together
    and in their order (a module-scoped fixture is built once); every worker sorts alike."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    cwd: Path

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def run_dirs(self) -> list[Path]:
        """Run folders (those with a summary.json or .hydra/) under cwd/outputs, oldest first."""
        found = {p.parent for p in (self.cwd / "outputs").rglob(".hydra")}
        return sorted(found, key=lambda p: p.stat().st_mtime)

    @property
    def run_dir(self) -> Path:
        dirs = self.run_dirs()
        assert dirs, f"no run folder was written\n{self.output[-3000:]}"
        return dirs[-1]

    def summary(self) -> dict:
        return json.loads((self.run_dir / "summary.json").read_text())

    def metrics(self) -> list[dict]:
        lines = (self.run_dir / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


def cli(
    module: str,
    *args: str,
    cwd: Path,
    expect: int | None = 0,
    env: dict | None = None,
    timeout: float = 600,
) -> CliResult:
    """Run ``python -m <module> <args>`` as a user would, in ``cwd``."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    # the children import this checkout's code, whatever is installed and wherever they run
    inherited = full_env.get("PYTHONPATH", "")
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), inherited]))
    full_env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    result = CliResult(proc.returncode, proc.stdout, proc.stderr, cwd)
    if expect is not None:
        assert proc.returncode == expect, (
            f"exit {proc.returncode} != {expect}\nSTDOUT:\n{proc.stdout[-4000:]}\n"
            f"STDERR:\n{proc.stderr[-4000:]}"
        )
    return result


def run_script(
    name: str, *args: str, cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/<name> <args>`` with this checkout's src, as a user would; it must exit 0."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Small and quick: every test run trains a few steps at most unless it says otherwise.
FAST = ("trainer.epochs=1", "trainer.log_every=1", "logger.progress=plain")


@pytest.fixture
def train(tmp_path):
    """``train("model=mlp", ...)`` runs the real `train` CLI in a fresh temp folder."""

    def run(*overrides: str, expect: int | None = 0, **kwargs) -> CliResult:
        return cli(
            "athanor.train", *overrides, cwd=kwargs.pop("cwd", tmp_path), expect=expect, **kwargs
        )

    return run


@pytest.fixture
def athanor_cmd(tmp_path):
    def run(*args: str, expect: int | None = 0, **kwargs) -> CliResult:
        return cli("athanor", *args, cwd=kwargs.pop("cwd", tmp_path), expect=expect, **kwargs)

    return run


def compose(*overrides: str) -> dict:
    """The composed config as plain data, exactly as `train` would see it (in-process)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from athanor.cli.compose import prepare_hydra

    prepare_hydra()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)
