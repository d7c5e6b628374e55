"""User mistakes end with one clear paragraph, a non-zero exit and no traceback."""

from __future__ import annotations

import pytest

from conftest import FAST

CASES = [
    # (overrides, words the message must contain)
    (["model.name=resnt18"], ["resnt18", "Did you mean 'resnet18'?", "simple_cnn"]),
    (["+optim.lrr=0.1"], ["no argument 'lrr'", "Did you mean 'lr'?", "weight_decay"]),
    (["optim.lr=-0.1"], ["optim.lr=-0.1", "a learning rate must be > 0"]),
    (["optim.lr=inf"], ["optim.lr=inf", "a learning rate must be > 0"]),
    (["optim.lrr=0.1"], ["optim.lrr", "Did you mean 'optim.lr'?", "weight_decay"]),
    (["trainer.epoch=5"], ["trainer.epoch", "Did you mean 'trainer.epochs'?", "max_steps"]),
    (["+data.batch_size=8"], ["data.batch_size is already in the config", "data.batch_size=<"]),
    (["trainer.epochs=0"], ["trainer.epochs=0", "at least 1"]),
    (["trainer.epochs=abc"], ["trainer.epochs='abc'", "expected int"]),
    (["trainer.precision=fp8"], ["fp8", "32, bf16, fp16"]),
    (["data.batch_size=0"], ["data.batch_size=0"]),
    (["+trainer.epoks=3"], ["trainer.epoks", "Did you mean 'epochs'?"]),
    (["optim.no_decay=[bias,nrom]"], ["nrom", "bias, norm"]),
    (["scheduler.warmup_steps=abc"], ["scheduler.warmup_steps='abc'", "expected int"]),
    (["scheduler.warmup_steps=2.5"], ["scheduler.warmup_steps=2.5", "expected int"]),
    (["scheduler.warmup_epochs=1", "scheduler.warmup_steps=5"], ["warmup_epochs or", "not both"]),
    (["scheduler.min_lr=-1"], ["scheduler.min_lr=-1", ">= 0"]),
    (["loss.flooding=abc"], ["loss.flooding='abc'", "expected float"]),
    (["loss.label_smoothing=1.5"], ["loss.label_smoothing=1.5", "in [0, 1)"]),
    (["loss=focal", "loss.alpha=[1.0,2.0]"], ["loss.alpha has 2 entries", "10 classes"]),
    (["data.std=[0.0]"], ["data.std=[0.0]", "> 0"]),
    (["data.image_size=0"], ["data.image_size=0", "> 0"]),
    (["augment.mix_prob=2"], ["augment.mix_prob=2", "in [0, 1]"]),
    (["model.init=he"], ["model.init='he'", "kaiming"]),
]


@pytest.mark.parametrize(("overrides", "words"), CASES, ids=[c[0][0] for c in CASES])
def test_user_error_is_one_paragraph_without_traceback(train, overrides, words):
    result = train(*FAST, *overrides, expect=2)
    err = result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in err, f"{word!r} not in:\n{err}"
    paragraph = [line for line in err.splitlines() if "Config error" in line]
    assert len(paragraph) == 1


def test_a_config_error_leaves_no_run_folder(train):
    result = train(*FAST, "optim.lr=-0.1", expect=2)
    assert "learning rate" in result.stderr and "Nothing was written" in result.stderr
    assert not result.run_dirs()


def test_a_run_that_fails_while_training_leaves_a_summary_saying_why(train):
    result = train(*FAST, "optim=sgd", "optim.lr=1.0e+30", expect=1)
    summary = result.summary()
    assert summary["status"] == "failed" and "NaN" in summary["error"]


def test_unknown_group_option_suggests_the_closest_file(train):
    result = train("model=resnt18", expect=2)
    assert "Traceback" not in result.output
    assert "model='resnt18'" in result.stderr and "Did you mean 'resnet18'?" in result.stderr
    assert "simple_cnn" in result.stderr


def test_unknown_choice_inside_a_sweep_is_caught_before_any_job(train):
    result = train("-m", "optim=sgd,adamww", expect=2)
    assert "Did you mean 'adamw'?" in result.stderr
    assert not (result.cwd / "outputs").exists()


def test_debug_switch_shows_traceback(train):
    result = train(*FAST, "trainer.epochs=0", expect=None, env={"ATHANOR_DEBUG": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_a_builder_argument_its_file_does_not_list_is_named_with_the_way_to_add_it(train):
    # fake's builder takes `seed`, which conf/data/fake.yaml does not list
    result = train("data=fake", "data.seed=3", "dry_run=true", expect=2)
    assert "Traceback" not in result.output
    assert "data 'fake' takes the argument seed" in result.stderr
    assert "+data.seed=<value>" in result.stderr
