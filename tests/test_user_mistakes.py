"""Mistakes in a user's own code, data and files, run through the real CLI: each is answered in
plain words with the right exit code (2: the user's mistake, 1: a failure), the user's own
traceback for their own code (their frames, not Hydra's or athanor's), and nothing already
written is lost (a failed run still says so in summary.json)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAST, ROOT

USER_MODULE = """
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from athanor import DATASETS, LOSSES, MODELS, OPTIMIZERS


def _ok(n=64, k=2, width=4):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, width, generator=g), torch.arange(n) % k)


class RaisesAt5(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        if i == 5:
            raise ValueError("row 5 is broken")
        return torch.randn(4), i % 2


class Ragged(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        return torch.randn(4 + (i % 3)), i % 2


@DATASETS.register("raises_at_5")
def raises_at_5():
    return RaisesAt5(), _ok()


@DATASETS.register("ragged")
def ragged():
    return Ragged(), _ok()


@DATASETS.register("label_10")
def label_10():
    x = torch.randn(64, 4)
    return TensorDataset(x, torch.arange(64) % 11), _ok()


@DATASETS.register("multihot")
def multihot(value: float = 2.0):
    y = torch.zeros(64, 3)
    y[::2, 0] = value
    y[1::2, 1] = 1.0
    return TensorDataset(torch.randn(64, 4), y), TensorDataset(torch.randn(64, 4), y)


@DATASETS.register("nan_target")
def nan_target():
    y = torch.randn(64)
    y[9] = float("nan")
    return TensorDataset(torch.randn(64, 4), y), TensorDataset(torch.randn(64, 4), y)


class DictInputs(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        return {"features": torch.randn(4)}, i % 3


@DATASETS.register("dict_inputs")
def dict_inputs():
    return DictInputs(), DictInputs()


@DATASETS.register("a_list")
def a_list():
    return [1, 2, 3]


@MODELS.register("boom")
def boom(*, num_classes):
    raise IndexError("boom in the builder")


class BadForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        return self.helper(x)

    def helper(self, x):
        raise KeyError("forward went wrong")


@MODELS.register("bad_forward")
def bad_forward(*, num_classes):
    return BadForward()


@MODELS.register("a_dict")
def a_dict(*, num_classes):
    return {"weights": 1}


class ExplodingLoss(nn.Module):
    def forward(self, outputs, targets):
        raise RuntimeError("the loss exploded")


@LOSSES.register("exploding")
def exploding(*, num_classes):
    return ExplodingLoss()


@LOSSES.register("an_int")
def an_int(*, num_classes):
    return 3


@OPTIMIZERS.register("a_list_opt")
def a_list_opt(params, *, lr: float = 0.1):
    return [lr]
"""

GROUPS = {
    "data": [
        "raises_at_5",
        "ragged",
        "label_10",
        "multihot",
        "nan_target",
        "a_list",
        "dict_inputs",
    ],
    "model": ["boom", "bad_forward", "a_dict"],
    "loss": ["exploding", "an_int"],
    "optim": ["a_list_opt"],
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with the user's module and a conf/ file for each of its builders."""
    (tmp_path / "mine.py").write_text(USER_MODULE)
    for group, names in GROUPS.items():
        (tmp_path / "conf" / group).mkdir(parents=True)
        for name in names:
            (tmp_path / "conf" / group / f"{name}.yaml").write_text(f"name: {name}\n")
    return tmp_path


def run(train, project: Path, *overrides: str, expect: int):
    return train(
        "imports=[mine.py]", *FAST, "trainer.max_steps=2", *overrides, expect=expect, cwd=project
    )


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_users_traceback(result, first: str, frame: str) -> None:
    """The first line names what failed; the traceback holds the user's frame and none of
    Hydra's or athanor's plumbing; summary.json says failed, with the reason."""
    text = result.stderr
    start = text.index("Error in your code: ")
    assert first in text[start:].splitlines()[0], text[-2000:]
    trace = text[start:]
    assert 'mine.py", line' in trace and frame in trace, trace
    assert "hydra" not in trace.lower(), trace
    assert "/athanor/" not in trace, trace
    assert "Error executing job" not in text
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert first in summary["error"]


# -- the user's code, framed -------------------------------------------------------------------


def test_a_builder_that_raises_shows_the_users_traceback(train, project):
    result = run(train, project, "model=boom", "data=digits", expect=1)
    assert_users_traceback(result, "model builder 'boom' (athanor_user.mine)", "in boom")
    assert "IndexError: boom in the builder" in result.stderr


def test_a_dataset_that_raises_names_the_item(train, project):
    fixed = "hydra.run.dir=outputs/mine"
    result = run(train, project, "data=raises_at_5", "model=mlp", fixed, expect=1)
    assert_users_traceback(
        result, "ValueError reading item 5 of the train split (RaisesAt5", "in __getitem__"
    )
    # the folder held no run (it failed while being built): the fixed run starts there
    again = run(train, project, "data=digits", "model=mlp", fixed, expect=0)
    assert json.loads((again.cwd / "outputs/mine/summary.json").read_text())["status"] == (
        "completed"
    )


def test_a_model_forward_that_raises_names_the_function(train, project):
    result = run(train, project, "model=bad_forward", "data=digits", expect=1)
    assert_users_traceback(result, "BadForward.helper (", "in helper")
    assert "KeyError: 'forward went wrong'" in result.stderr


def test_a_loss_that_raises_during_training_fails_the_run(train, project):
    result = run(train, project, "loss=exploding", "data=digits", "model=mlp", expect=1)
    assert_users_traceback(result, "ExplodingLoss.forward (", "the loss exploded")


def test_a_model_whose_forward_cannot_take_the_datas_input_is_named(train, project):
    """A Dataset of dict inputs and a model whose forward takes one tensor: both named, with
    how athanor calls forward, before anything runs (not torch's TypeError from its call)."""
    result = run(train, project, "data=dict_inputs", "model=mlp", expect=2)
    text = " ".join(result.stderr.split())
    assert "model mlp's forward(input) cannot take the data's input {features: 4}" in text, text
    assert "forward(**inputs) for a dict input" in text and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("model=a_dict", "model builder 'a_dict' (athanor_user.mine) returned a dict"),
        ("loss=an_int", "loss builder 'an_int' (athanor_user.mine) returned a int"),
        ("data=a_list", "data builder 'a_list' (athanor_user.mine) returned a list"),
        ("optim=a_list_opt", "optim builder 'a_list_opt' (athanor_user.mine) returned a list"),
    ],
)
def test_what_a_builder_returns_is_checked_against_its_contract(train, project, override, words):
    overrides = [override] + ([] if override.startswith("data") else ["data=digits"])
    if override.startswith(("loss", "optim")):
        overrides.append("model=mlp")
    result = run(train, project, *overrides, expect=2)
    text = " ".join(result.stderr.split())
    assert words in text and "must return" in text, text
    assert "Traceback" not in result.stderr


# -- data checked before the first step --------------------------------------------------------


def test_items_of_different_shapes_are_named(train, project):
    result = run(train, project, "data=ragged", "model=mlp", expect=2)
    text = " ".join(result.stderr.split())
    assert "item 1 of the train split (Ragged" in text and "float32 5" in text, text
    assert "Traceback" not in result.stderr


def test_a_class_label_outside_the_classes_is_named(train, project):
    result = run(train, project, "data=label_10", "model=mlp", "data.num_classes=10", expect=2)
    text = " ".join(result.stderr.split())
    assert "item 10 of the train split" in text and "label outside [0, 10)" in text, text


def test_multi_hot_targets_must_be_0_or_1(train, project):
    result = run(train, project, "data=multihot", "model=mlp", "task=multilabel", expect=2)
    text = " ".join(result.stderr.split())
    assert "range from 0 to 2" in text and "task.soft_labels=true" in text, text
    soft = ["data=multihot", "+data.value=0.5", "model=mlp", "task=multilabel"]
    run(train, project, *soft, expect=2)  # 0.5 is soft: refused unless asked for
    run(train, project, *soft, "task.soft_labels=true", expect=0)


def test_a_non_finite_target_is_named(train, project):
    result = run(train, project, "data=nan_target", "model=mlp", "task=regression", expect=2)
    text = " ".join(result.stderr.split())
    assert "item 9 of the train split (TensorDataset" in text and "the target nan" in text, text


def _table(folder: Path, name: str = "houses.csv", **change) -> Path:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 60
    frame = pd.DataFrame(
        {
            "area": rng.normal(size=n),
            "rooms": rng.normal(size=n),
            "city": rng.choice(["north", "south"], n),
            "price": rng.normal(size=n),
        }
    )
    for column, (row, value) in change.items():
        frame.loc[row, column] = value
    frame.to_csv(folder / name, index=False)
    return folder / name


def _refused_table(train, folder: Path, *overrides: str, **change) -> str:
    """A table run on houses.csv (with ``change``d cells) that is refused: its paragraph."""
    pytest.importorskip("pandas")
    _table(folder, **change)
    result = train("data=table", "data.path=houses.csv", *overrides, *FAST, expect=2)
    assert "Traceback" not in result.stderr
    return " ".join(result.stderr.split())


def test_a_table_with_inf_names_the_column_and_the_row(train, tmp_path):
    text = _refused_table(train, tmp_path, "data.target=price", rooms=(7, float("inf")))
    assert "feature column 'rooms' holds inf in row 7 (line 9" in text, text


def test_a_text_target_for_regression_is_refused_by_its_name(train, tmp_path):
    text = _refused_table(train, tmp_path, "data.target=city", "task=regression")
    assert "data.target=city holds classes ('north', 'south'" in text, text


def test_evaluate_names_the_columns_a_table_run_did_not_train_on(train, tmp_path):
    pytest.importorskip("pandas")
    import pandas as pd

    _table(tmp_path)
    done = train(
        "data=table", "data.path=houses.csv", "data.target=price", "task=regression", *FAST
    )
    spec = __import__("torch").load(done.run_dir / "checkpoints" / "last.pt", weights_only=True)[
        "data"
    ]
    assert spec["columns"] == ["area", "rooms", "city=north", "city=south"]
    frame = pd.read_csv(tmp_path / "houses.csv").drop(columns=["rooms"])
    frame["floor"] = 1.0
    frame.to_csv(tmp_path / "other.csv", index=False)
    from conftest import cli

    result = cli(
        "athanor.evaluate", f"ckpt={done.run_dir}", "data.path=other.csv", cwd=tmp_path, expect=2
    )
    text = " ".join(result.stderr.split())
    assert "missing column(s) rooms" in text and "extra column(s) floor" in text, text


# -- other people's files ----------------------------------------------------------------------


def test_a_yaml_error_in_the_projects_conf_names_file_line_and_column(train, tmp_path):
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "broken.yaml").write_text("name: mlp\nhidden: [1, 2\nx: : y\n")
    result = train("model=broken", expect=2)
    text = " ".join(result.stderr.split())
    assert "broken.yaml, line 3, column 2: not valid YAML" in text, text
    assert "Traceback" not in result.stderr


def test_a_data_root_that_is_a_file_is_named(train, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    result = train("data=imagefolder", "data.root=afile", expect=2)
    assert "data.root=afile is a file, not a folder" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_export_into_a_place_that_cannot_hold_a_file_names_it(train, athanor_cmd, tmp_path):
    done = train("model=mlp", "data=digits", *FAST, "trainer.max_steps=1")
    (tmp_path / "afile").write_text("in the way")
    result = athanor_cmd("export", str(done.run_dir), "afile/model.pt", expect=2)
    assert result.stderr.startswith("Error: afile: a file is in the way"), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["new/..", "x/../", "_", "9lives"])
def test_init_refuses_a_name_that_is_no_new_package(athanor_cmd, tmp_path, name):
    (tmp_path / "new").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    result = athanor_cmd("init", name, expect=2)
    assert "Config error: athanor init:" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def _fake_run(folder: Path, overrides: list[str], status: str = "completed") -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (folder / "summary.json").write_text(
        json.dumps({"status": status, "monitor": "val/acc", "mode": "max", "wall_time_s": 3})
    )
    (folder / "metrics.jsonl").write_text(
        json.dumps({"epoch": 1, "step": 10, "val/acc": 0.5, "val/loss": 1.0}) + "\n"
    )
    return folder


def test_report_fits_a_terminal_and_reads_damaged_files(athanor_cmd, tmp_path):
    root = tmp_path / "outputs"
    for i in range(6):  # every run with its own long overrides: many keys that vary
        keys = [f"model.some_rather_long_key_{i}_{j}=value_number_{i}_{j}_long" for j in range(5)]
        _fake_run(root / f"2026-12-06/10-00-0{i}_run_with_a_long_name_{i}", keys)
    damaged = _fake_run(root / "2026-12-06/11-00-00_damaged", ["optim.lr=0.1"])
    with damaged.joinpath("metrics.jsonl").open("ab") as f:
        f.write(b"\xff\xfe{not json\n")
    broken = _fake_run(root / "2026-12-06/12-00-00_broken_summary", ["optim.lr=0.2"])
    broken.joinpath("summary.json").write_bytes(b"\xff{")
    odd = _fake_run(root / "2026-12-06/13-00-00_odd_files", ["optim.lr=0.3"])
    odd.joinpath(".hydra", "overrides.yaml").write_bytes(b"- optim.lr=\xff\n")
    odd.joinpath("metrics.jsonl").write_text('3\n"text"\n')
    result = athanor_cmd("report", "outputs")
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines if not line.startswith("wrote ")) <= 100, result.stdout
    assert "--wide" in result.stdout and "damaged" in result.stdout
    assert any("11-00-00_damaged" in line and "0.5000" in line for line in lines)
    wide = athanor_cmd("report", "outputs", "--wide")
    assert "model.some_rather_long_key_3_4" in wide.stdout
    assert max(len(line) for line in wide.stdout.splitlines()) > 100


# -- the first hour ----------------------------------------------------------------------------


def test_a_short_run_keeps_one_checkpoint_file(train):
    done = train("model=mlp", "data=digits", *FAST, "trainer.max_steps=3")
    files = list((done.run_dir / "checkpoints").glob("*.pt"))
    assert {f.name for f in files} >= {"best.pt", "last.pt"}
    assert len({f.stat().st_ino for f in files}) == 1  # one file on disk, under its names


def test_a_regression_plot_has_no_accuracy_panel_and_no_warning(tmp_path):
    from athanor.observe.plots import curves_figure

    train_log = [{"step": s, "train/loss": 1.0 / s, "lr": 0.1} for s in range(1, 5)]
    val = [{"step": 4, "val/loss": 0.5, "val/mae": 0.3}]
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error")
        fig = curves_figure(train_log, val)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "mean absolute error", "learning rate"]


def test_resume_auto_in_a_new_folder_is_said_once(train, tmp_path):
    result = train(
        "model=mlp",
        "data=digits",
        *FAST,
        "trainer.max_steps=1",
        "resume=auto",
        "hydra.run.dir=outputs/auto",
    )
    assert result.output.count("resume=auto: no checkpoint") == 1, result.output


@pytest.mark.slow
def test_one_ctrl_c_is_one_warning_and_the_steps_are_right(tmp_path):
    """A run stopped by SIGINT in its second epoch: one warning for the signal, no 'epoch done'
    line for the epoch it stopped in, exit 130 with the run marked interrupted."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "athanor.train", "model=mlp", "data=digits", "trainer.epochs=500",
         "logger.progress=plain", "trainer.log_every=1", "hydra.run.dir=outputs/stop"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "epoch 1 step 25/" in line or "epoch 2 step" in line:  # inside epoch 2 (22 a epoch)
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=300)[0]
    text = "".join(lines) + rest
    assert proc.returncode == 130, text[-3000:]
    assert text.count("SIGINT received") == 1, text[-3000:]
    done = [line for line in text.splitlines() if "done (step" in line]
    assert all(line.split("done (step ")[1].split(")")[0] == "22" for line in done), done
    assert "epoch 2/500 stopped at step" in text
    summary = json.loads((tmp_path / "outputs/stop/summary.json").read_text())
    assert summary["status"] == "interrupted"


@pytest.mark.slow
def test_the_readme_preemption_demo_is_killed_and_exits_130(tmp_path):
    """The README's demo, as written but with a shorter wait: the run is long enough that the
    TERM arrives while it trains, and the exit code is the 130 the README states."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("train data=digits trainer.epochs=2000 distributed.nproc_per_node=2")
    command = readme[start : readme.index("\n", start)].rstrip(" &")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        command.replace("train ", f"{sys.executable} -m athanor.train ", 1).split(),
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if "epoch 1/2000 done" in line:
            break
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, rest[-3000:]
    summary = json.loads((tmp_path / "outputs/stop-demo/summary.json").read_text())
    assert summary["status"] == "interrupted"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "first", "frame"),
    [
        (
            ["data=raises_at_5", "model=mlp"],
            "ValueError reading item 5 of the train split (RaisesAt5",
            "in __getitem__",
        ),
        (["data=digits", "model=bad_forward"], "BadForward.helper (", "in helper"),
        (["data=digits", "model=mlp", "loss=exploding"], "ExplodingLoss.forward (", "in forward"),
    ],
    ids=["dataset", "model_forward", "loss"],
)
def test_the_users_code_raising_in_a_ddp_worker_is_framed_the_same(
    train, project, overrides, first, frame
):
    """Under distributed.nproc_per_node=2 the worker's error travels home: the launcher loads
    the user's code before it validates, and the parent shows the user's traceback once, for
    their Dataset, their model's forward and their loss alike."""
    result = run(train, project, *overrides, "distributed.nproc_per_node=2", expect=1)
    assert_users_traceback(result, first, frame)
    assert result.stderr.count("Error in your code") == 1
