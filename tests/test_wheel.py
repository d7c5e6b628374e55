"""Installed, not cloned: build the wheel, install it (non-editable) in a fresh venv and use it
from an empty folder with no source tree around: `train`, `evaluate`, `athanor list`,
`athanor report`, and `athanor init` + `train` in the new project.

The fresh venv gets the shared venv's third-party packages through a .pth file naming its
site-packages (a fresh torch is 5.5 GB and needs the network); only the athanor wheel is
installed into it, with --no-deps --no-index. A .pth *line* adds that folder to sys.path but
does not run the .pth files inside it, so the shared venv's editable athanor
(``__editable__.athanor-*.pth``) cannot leak in; the test checks that athanor is imported from
the new venv. Nothing is downloaded (the wheel is built with --no-build-isolation)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ATHANOR_CONF")}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{cmd} exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    shutil.copytree(ROOT / "conf", source / "conf")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip"]
    run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp / "dist"),
            str(source),
        ],
        tmp,
    )
    (wheel,) = (tmp / "dist").glob("athanor-*.whl")
    shutil.rmtree(source)
    env = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(env)], tmp)
    py = env / "bin" / "python"
    site = Path(
        run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp
        ).stdout.strip()
    )
    (site / "shared_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([*pip, "--python", str(py), "install", "--no-deps", "--no-index", str(wheel)], tmp)
    return env


@pytest.mark.slow
def test_installed_wheel_trains_evaluates_lists_and_reports(venv, tmp_path):
    bin_ = venv / "bin"
    where = run(
        [str(bin_ / "python"), "-c", "import athanor; print(athanor.__file__)"], tmp_path
    ).stdout
    assert where.startswith(str(venv)), where  # not the shared venv's editable checkout
    work = tmp_path / "empty"
    work.mkdir()
    run([str(bin_ / "train"), "trainer.epochs=1", "logger.progress=plain"], work)
    (run_dir,) = (work / "outputs").glob("*/*_mlp_digits")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["best"]["val/acc"] > 0.5
    run([str(bin_ / "evaluate"), f"ckpt={run_dir}"], work)
    (written,) = (run_dir / "checkpoints").glob("eval_val_*.json")
    assert json.loads(written.read_text())["top1"] > 0.5
    guide = run([str(bin_ / "athanor"), "help", "guide"], work).stdout
    assert guide.startswith("# athanor guide")  # GUIDE.md ships in the wheel
    listing = run([str(bin_ / "athanor"), "list"], work).stdout
    assert "mlp" in listing and "digits_quick" in listing  # registries and the packaged conf/
    report = run([str(bin_ / "athanor"), "report", "outputs"], work)
    assert run_dir.name in report.stdout
    run([str(bin_ / "athanor"), "init", "my-project"], work)
    project = work / "my-project"
    run([str(bin_ / "train"), "trainer.epochs=1", "logger.progress=plain"], project)
    assert list((project / "outputs").glob("*/*_tinynet_blobs/summary.json"))
