"""Your own project: a project's conf/ beside athanor's, its own modules through `imports`,
entry-point plugins, errors in user code, `athanor init`, and athanor.fit / athanor.compose.
Anything that registers a builder runs in a subprocess (the registries are per process)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conftest import FAST, cli

TINYNET = '''
from torch import nn
from athanor import MODELS

@MODELS.register("tinynet")
def tinynet(*, num_classes: int, in_channels: int, width: int = 16) -> nn.Module:
    """One conv layer and a linear head (LazyLinear sizes itself on the first batch)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.LazyLinear(num_classes),
    )
'''  # the README's example, word for word


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


@pytest.fixture
def project(tmp_path) -> Path:
    """A project folder: my_project/nets.py (tinynet), conf/model/tinynet.yaml, and a
    conf/model/mlp.yaml that replaces athanor's own."""
    return write(
        tmp_path,
        {
            "my_project/__init__.py": "",
            "my_project/nets.py": TINYNET,
            "conf/model/tinynet.yaml": "name: tinynet\nwidth: 16\n",
            "conf/model/mlp.yaml": "name: mlp\nhidden: [24]\n",
            "conf/experiment/mine.yaml": "# @package _global_\n# my preset\noptim:\n  lr: 2.0e-2\n",
        },
    )


@pytest.mark.slow  # a training run or several CLI starts: ~30 s on a busy machine
def test_project_model_trains_from_its_own_module_and_conf(project):
    run = cli(
        "athanor.train",
        "model=tinynet",
        "imports=[my_project.nets]",
        "optim.lr=0.01",
        *FAST,
        cwd=project,
    )
    summary = run.summary()
    assert summary["status"] == "completed"
    assert summary["best"]["val/acc"] > 0.3  # 10 digit classes: chance is 0.1
    config = (run.run_dir / ".hydra" / "config.yaml").read_text()
    assert "name: tinynet" in config and "width: 16" in config
    # the project's mlp.yaml replaces athanor's: said once, in the log
    log = (run.run_dir / "train.log").read_text()
    assert log.count("model/mlp.yaml is used instead of athanor's own model/mlp.yaml") == 1
    # evaluate imports the run's own modules (saved with its config) before building the model
    cli("athanor.evaluate", f"ckpt={run.run_dir}", cwd=project)
    (report,) = (run.run_dir / "checkpoints").glob("eval_val_*.json")
    assert json.loads(report.read_text())["top1"] == pytest.approx(summary["best"]["val/acc"])


def test_project_conf_adds_options_and_wins_a_clash(project, monkeypatch):
    import athanor

    monkeypatch.chdir(project)
    assert athanor.compose(["model=mlp"])["model"]["hidden"] == [24]  # the project's file
    assert athanor.compose(["experiment=mine"])["optim"]["lr"] == 2.0e-2
    tinynet = athanor.compose(["model=tinynet"])["model"]
    assert (tinynet["name"], tinynet["width"], tinynet["freeze"]) == (
        "tinynet",
        16,
        [],
    )  # + defaults
    monkeypatch.chdir(project / "my_project")  # no conf/ here: athanor's own mlp
    assert athanor.compose(["model=mlp"])["model"]["hidden"] == [256, 128]


def test_config_dir_adds_options_like_a_project(project, tmp_path_factory, monkeypatch):
    import athanor

    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    composed = athanor.compose(["model=mlp"], config_dir=project / "conf")
    assert composed["model"]["hidden"] == [24]
    with pytest.raises(athanor.ConfigError, match="model='tinynett'.*Did you mean 'tinynet'"):
        athanor.compose(["model=tinynett"], config_dir=project / "conf")


@pytest.mark.slow  # a training run or several CLI starts: ~30 s on a busy machine
def test_cfg_job_and_list_show_the_project_options(project):
    job = cli("athanor.train", "--cfg", "job", "model=tinynet", cwd=project)
    assert "name: tinynet" in job.stdout
    listing = cli("athanor", "list", "model", cwd=project).stdout
    assert f"options from {project / 'conf'}: mlp, tinynet" in listing
    experiments = cli("athanor", "list", "experiment", cwd=project).stdout
    assert "mine" in experiments and "digits_quick" in experiments
    elsewhere = project / "my_project"  # no conf/ here: --config-dir brings the project's in
    job = cli(
        "athanor.train",
        "--config-dir",
        str(project / "conf"),
        "--cfg",
        "job",
        "model=mlp",
        cwd=elsewhere,
    )
    assert "hidden:\n  - 24" in job.stdout


@pytest.mark.slow  # a training run or several CLI starts: ~30 s on a busy machine
def test_a_py_file_import_registers_and_is_listed(project):
    write(
        project,
        {
            "extra/losses.py": '''
        import torch.nn.functional as F
        from torch import nn
        from athanor import LOSSES


        class Halved(nn.Module):
            def forward(self, logits, target):
                return 0.5 * F.cross_entropy(logits, target)


        @LOSSES.register("halved_ce")
        def halved_ce() -> nn.Module:
            """Half the cross-entropy."""
            return Halved()
        '''
        },
    )
    write(project, {"conf/loss/halved_ce.yaml": "name: halved_ce\n"})
    run = cli(
        "athanor.train",
        "loss=halved_ce",
        "imports=[extra/losses.py]",
        "data.subset=128",
        *FAST,
        cwd=project,
    )
    assert run.summary()["status"] == "completed"


@pytest.mark.slow  # two CLI starts' worth of imports: ~30 s on a busy machine
def test_an_entry_point_plugin_is_loaded_and_marked(tmp_path):
    site = write(
        tmp_path / "site",
        {
            "myplug/__init__.py": '''
                from torch import nn
                from athanor import MODELS


                @MODELS.register("plugnet")
                def plugnet(*, num_classes: int) -> nn.Module:
                    """A plugin's model."""
                    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))
                ''',
            "myplug-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: myplug\nVersion: 0.1\n",
            "myplug-0.1.dist-info/entry_points.txt": "[athanor.plugins]\nmyplug = myplug\n",
        },
    )
    out = cli("athanor", "list", "model", cwd=tmp_path, env={"PYTHONPATH": str(site)}).stdout
    assert "plugnet" in out and "[myplug (plugin myplug)]" in out


def test_a_missing_import_is_one_paragraph_naming_it_and_the_folder(project):
    run = cli("athanor.train", "imports=[my_project.nope]", cwd=project, expect=2)
    assert "no module 'my_project.nope' found" in run.stderr and str(project) in run.stderr
    assert "Traceback" not in run.output


def test_a_module_that_raises_shows_its_own_traceback(project):
    write(project, {"my_project/broken.py": "import math\nvalue = math.sqrt(-1)\n"})
    run = cli("athanor.train", "imports=[my_project.broken]", cwd=project, expect=1)
    first = run.stderr.splitlines()[0]
    assert first == "Error in your code: imports: module 'my_project.broken' raised while importing"
    assert 'my_project/broken.py", line 2' in run.stderr and "ValueError: math domain" in run.stderr


def test_a_builder_that_raises_shows_its_own_traceback(project):
    write(
        project,
        {
            "my_project/boom.py": """
        from athanor import MODELS


        @MODELS.register("boom")
        def boom(*, num_classes: int):
            return [1, 2][num_classes]
        """,
            "conf/model/boom.yaml": "name: boom\n",
        },
    )
    run = cli("athanor.train", "model=boom", "imports=[my_project.boom]", cwd=project, expect=1)
    first = run.stderr.splitlines()[0]
    assert first.startswith(
        "Error in your code: model builder 'boom' (my_project.boom) raised IndexError"
    )
    assert 'my_project/boom.py", line 6, in boom' in run.stderr


def test_registering_a_builtin_name_again_names_both_places(project):
    write(
        project,
        {
            "my_project/dup.py": """
        from athanor import MODELS


        @MODELS.register("mlp")
        def mlp(*, num_classes: int):
            raise AssertionError("never built")
        """
        },
    )
    run = cli("athanor.train", "imports=[my_project.dup]", cwd=project, expect=2)
    assert (
        "model name 'mlp' is registered twice: first by athanor.models.simple, again by my_project.dup"
        in " ".join(run.stderr.split())
    )
    assert "Traceback" not in run.output


def test_init_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    run = cli("athanor", "init", "taken", cwd=tmp_path, expect=2)
    assert "already exists and is not empty" in run.stderr
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_init_writes_a_project_that_trains_and_passes_its_own_test(tmp_path):
    import os
    import subprocess
    import sys

    cli("athanor", "init", "my-project", cwd=tmp_path)
    root = tmp_path / "my-project"
    assert (root / "my_project" / "nets.py").is_file() and (
        root / "conf/experiment/default.yaml"
    ).is_file()
    assert '"athanor"' in (root / "pyproject.toml").read_text()
    run = cli("athanor.train", "trainer.epochs=1", "logger.progress=plain", cwd=root)
    summary = run.summary()
    assert summary["status"] == "completed" and summary["best"]["val/acc"] > 0.5
    assert "tinynet_blobs" in run.run_dir.name
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    smoke = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert smoke.returncode == 0 and "1 passed" in smoke.stdout, smoke.stdout + smoke.stderr


@pytest.mark.slow  # a training run or several CLI starts: ~30 s on a busy machine
def test_fit_returns_the_summary_and_raises_config_errors(tmp_path, monkeypatch):
    import athanor

    monkeypatch.chdir(tmp_path)
    summary = athanor.fit([*FAST])
    assert summary["status"] == "completed" and summary["best"]["val/acc"] > 0.3
    (run,) = (tmp_path / "outputs").glob("*/*_mlp_digits")
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    with pytest.raises(athanor.ConfigError, match="optim.lrr|has no argument 'lrr'"):
        athanor.fit(["optim.lrr=1"])


def test_import_athanor_is_cheap():
    import subprocess
    import sys

    code = "import sys, athanor; print('torch' in sys.modules, 'athanor.models' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
