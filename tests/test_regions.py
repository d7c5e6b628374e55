"""The repeated blocks of zoo and user models, activation checkpointing on them (same weights as
without, as the same run) and regional compile (one short inductor run on CPU: what was
compiled and its start-up cost, in the log and summary.json)."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

from athanor.engine.blocks import describe, find_blocks
from conftest import FAST

TINY = ("model=mlp", "model.hidden=[16,16]", "trainer.max_steps=3", "logger.plots=false")


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: torchvision.models.resnet18(), "8 x BasicBlock"),
        (lambda: torchvision.models.resnet50(), "16 x Bottleneck"),
        (lambda: torchvision.models.convnext_tiny(), "18 x CNBlock"),
        (lambda: torchvision.models.vit_b_16(), "12 x EncoderBlock"),
        (lambda: timm.create_model("test_vit"), "Block"),
        (lambda: timm.create_model("test_convnext"), "ConvNeXtBlock"),
        (lambda: timm.create_model("test_resnet"), "BasicBlock"),
        (lambda: timm.create_model("test_efficientnet"), "InvertedResidual"),
    ],
)
def test_zoo_blocks_are_found_by_class(build, expected):
    blocks = find_blocks(build())
    assert blocks and expected in describe(blocks)
    names = {id(b) for b in blocks}  # outermost only: no block inside a found block
    assert not any(id(m) in names for b in blocks for m in b.modules() if m is not b)


def test_the_users_blocks_are_found_by_name():
    class MyBlock(nn.Sequential):
        pass

    model = nn.Sequential(nn.Conv2d(3, 8, 3), MyBlock(nn.ReLU()), MyBlock(nn.Identity()))
    assert describe(find_blocks(model, ["MyBlock"])) == "2 x MyBlock"
    assert find_blocks(model) == []  # no zoo class: nothing unless named


def test_a_block_name_the_model_does_not_hold_is_refused(train):
    """A typo in model.blocks would leave the model unsharded or unchecked: it is named, with
    the classes the model does hold, before the run starts."""
    result = train(*FAST, *TINY, "model.blocks=[Linear,Lineer]", expect=2)
    said = " ".join(result.stderr.split())
    assert "model.blocks names Lineer, but no module of the model (Sequential)" in said, said
    assert "Its module classes: Flatten, Linear, ReLU." in said and "Traceback" not in said


def test_activation_checkpointing_trains_the_same_weights(train):
    args = (*FAST, *TINY, "model.blocks=[Linear]")
    plain = train(*args)
    checkpointed = train(*args, "trainer.activation_checkpointing=true")
    assert "activation checkpointing: 3 x Linear recompute" in checkpointed.output
    a, b = (
        torch.load(r.run_dir / "checkpoints" / "last.pt", weights_only=True)["state"]["model"]
        for r in (plain, checkpointed)
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # same names too


def test_a_model_without_known_blocks_says_how_to_name_them(train):
    result = train(*FAST, *TINY, "trainer.activation_checkpointing=true")
    assert "no block of Sequential is known" in result.output
    assert "model.blocks=[MyBlock]" in result.output


@pytest.mark.slow
def test_regional_compile_runs_end_to_end_and_reports_its_cost(train):
    """inductor on CPU, kept tiny: the two ReLU blocks share one compiled graph."""
    result = train(*FAST, *TINY, "model.blocks=[ReLU]", "trainer.compile=regional")
    compiled = result.summary()["compiled"]
    assert compiled["mode"] == "regional" and compiled["blocks"] == "2 x ReLU"
    assert compiled["compile_s"] > 0
    assert "trainer.compile=regional: compiled 2 x ReLU;" in result.output
    assert "spent compiling (start-up)" in result.output
    assert result.summary()["status"] == "completed"


def test_a_bad_compile_value_is_refused(train):
    result = train(*FAST, "trainer.compile=everything", expect=2)
    assert "trainer.compile" in result.stderr and "regional" in result.stderr
    assert "Traceback" not in result.stderr
