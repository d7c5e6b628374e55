"""The garbage collector around `train`'s start-up (process/collector.py): paused while torch,
Hydra and the run are built, resumed before the first step with the start-up's objects frozen."""

from __future__ import annotations

import gc
import json

from athanor.process import collector
from conftest import FAST

PROBE = '''
import gc, json
from pathlib import Path
import torch
from torch import nn
from athanor import MODELS

class Probe(nn.Sequential):
    """An MLP that writes down the collector's state at each kind of forward it sees."""
    def forward(self, x):
        kind = "train" if self.training and torch.is_grad_enabled() else "build"
        seen = Path("collector.json")
        states = json.loads(seen.read_text()) if seen.exists() else {}
        states.setdefault(kind, [gc.isenabled(), gc.get_freeze_count()])
        seen.write_text(json.dumps(states))
        return super().forward(x)

@MODELS.register("probe")
def probe(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return Probe(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, num_classes))
'''


def test_pause_then_done_freezes_and_resumes_and_only_undoes_its_own_pause():
    assert gc.isenabled()
    frozen_before = gc.get_freeze_count()
    collector.start_up_done()  # nothing was paused: a library caller's collector is left alone
    assert gc.isenabled() and gc.get_freeze_count() == frozen_before
    try:
        collector.pause_for_start_up()
        assert not gc.isenabled()
        collector.start_up_done()
        assert gc.isenabled() and gc.get_freeze_count() > frozen_before
    finally:
        gc.enable()
        gc.unfreeze()


def test_train_builds_with_the_collector_paused_and_trains_with_it_on(train, tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "probe.yaml").write_text("name: probe\n")
    train("imports=[probe.py]", "model=probe", "data=digits", "trainer.max_steps=3", *FAST)
    states = json.loads((tmp_path / "collector.json").read_text())
    # the model summary's forward at build time ran with the collector paused
    assert states["build"][0] is False
    enabled, frozen = states["train"]
    assert enabled is True
    assert frozen > 100_000  # torch's and Hydra's objects, out of every later collection's way
