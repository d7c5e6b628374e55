"""`train dry_run=true`: builds and times everything, prints the plan, leaves no folder."""

from __future__ import annotations


def test_dry_run_prints_the_plan_and_leaves_nothing_behind(train, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = train(
        "dry_run=true", "model=simple_cnn", "trainer.epochs=3", env={"TMPDIR": str(scratch)}
    )
    out = result.stdout
    for words in (
        "dry run: everything builds",
        "model=simple_cnn, data=digits",
        "1438 train / 359 val samples",
        "22 per epoch, 66 in total",  # 1438 // 64 full batches (drop_last)
        "ms per step",
        "peak memory",
        "estimated time",
        "FLOPs per sample",
    ):
        assert words in out, f"{words!r} not in:\n{out}"
    assert not (result.cwd / "outputs").exists()
    assert list(scratch.glob("athanor-scratch-*")) == []  # the scratch run folder is gone


def test_dry_run_refuses_a_bad_config_before_any_work(train):
    result = train("dry_run=true", "trainer.accumulate=1000", expect=2)
    assert "trainer.accumulate=1000" in result.stderr
