"""The data paths and `data.*` options: the DataLoader path gives the same batches as the memory
path and for any worker count, batches are a pure function of (seed, epoch, batch index), the
weighted sampler balances classes, options that would do nothing are refused, and real runs train
on CIFAR-10 files and on an image folder."""

from __future__ import annotations

import logging

import pytest
import torch

from athanor.augment import Augmentation
from athanor.augment.mixing import build_mixer
from athanor.data import DataBundle, DataOptions, TensorSplit
from athanor.data import loaders as loaders_module
from athanor.data.pipeline import build_loaders
from athanor.distributed import Dist
from athanor.engine.build import build_augmentation, build_data, validate
from athanor.errors import ConfigError
from conftest import FAST, compose
from test_data_formats import write_cifar10, write_png_tree

SMALL = ("data=fake", "data.num_train=48", "data.num_val=16", "data.image_size=12")
SMALL += ("data.batch_size=8",)
CPU = torch.device("cpu")


def loaders(*overrides: str, seed: int = 0):
    config = compose(*SMALL, *overrides)
    bundle, options = build_data(config)
    augmentation, mix = build_augmentation(config, bundle)
    mixer = build_mixer(mix, bundle.num_classes)
    return build_loaders(bundle, options, augmentation, mixer, seed=seed, d=Dist(), device=CPU)


def batches(loader, epoch: int, start: int = 0, n: int = 3) -> list:
    out = []
    for batch in loader.epoch(epoch, start):
        out.append(batch)
        if len(out) == n:
            break
    return out


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x.inputs, y.inputs) and torch.equal(x.targets, y.targets)
        for x, y in zip(a, b, strict=True)
    )


def test_dataloader_path_matches_the_memory_path_batch_for_batch():
    memory = loaders("augment=cifar", "augment.padding=2")
    torch_path = loaders("augment=cifar", "augment.padding=2", "data.loader=torch")
    assert (memory.path, torch_path.path) == ("memory", "torch")
    for epoch in (0, 1):
        assert same(batches(memory.train, epoch), batches(torch_path.train, epoch))
    assert same(batches(memory.val, 0), batches(torch_path.val, 0))


def test_memory_path_standardizes_once_what_no_batch_op_draws_for(monkeypatch):
    # augment=none: a batch is a gather from the split standardized up front, the same values
    # as normalizing each batch (the dataloader path does), batch for batch
    plain = loaders("augment=none")
    assert plain.train.standardized is not None and plain.val.standardized is not None
    per_batch = loaders("augment=none", "data.loader=torch")
    for epoch in (0, 1):
        assert same(batches(plain.train, epoch), batches(per_batch.train, epoch))
    assert same(batches(plain.val, 0), batches(per_batch.val, 0))
    # random batch ops keep the per-batch path for training (validation draws nothing)
    augmented = loaders("augment=cifar", "augment.padding=2")
    assert augmented.train.standardized is None and augmented.val.standardized is not None
    # a split whose float copy is over data.memory_budget_mb (or the cap) is normalized batch by
    # batch, to the same values; the uint8 splits alone (27 KB here) still fit the budget
    over = loaders("augment=none", "data.memory_budget_mb=0.05")
    assert over.path == "memory" and over.train.standardized is None
    assert same(batches(over.train, 0), batches(plain.train, 0))
    monkeypatch.setattr(loaders_module, "STANDARDIZED_MB", 0.02)
    assert loaders("augment=none").train.standardized is None


def test_two_workers_give_the_same_batches_as_none():
    # RandAugment runs per sample in the workers: each sample is seeded by (seed, epoch, index)
    args = ("augment=randaugment", "augment.padding=2", "augment.mixup_alpha=0.4")
    none = loaders(*args, "data.num_workers=0")
    two = loaders(*args, "data.num_workers=2", "data.persistent_workers=true")
    assert two.train.loader.num_workers == 2 and two.train.loader.persistent_workers
    for epoch in (0, 1):
        assert same(batches(none.train, epoch), batches(two.train, epoch))
    other_seed = loaders(*args, "data.num_workers=0", seed=1)
    assert not same(batches(none.train, 0), batches(other_seed.train, 0))


@pytest.mark.parametrize("loader", ["memory", "torch"])
def test_a_resumed_epoch_sees_the_batches_it_would_have_seen(loader):
    built = loaders("augment=random_erasing", "augment.padding=1", f"data.loader={loader}")
    full = batches(built.train, epoch=2, n=5)
    resumed = batches(built.train, epoch=2, start=2, n=3)
    assert same(full[2:], resumed)


@pytest.mark.parametrize(
    ("n", "batch", "world"), [(359, 32, 2), (65, 32, 2), (129, 32, 2), (70, 8, 4)]
)
def test_every_rank_runs_as_many_evaluation_batches_and_sees_its_share_once(n, batch, world):
    """65 samples on 2 ranks in batches of 32: rank 0 holds 33 and rank 1 32; with fixed-size
    slices rank 0 ran 2 forwards and rank 1 one, and a sharded (FSDP) model, whose forward is a
    collective, waited forever. Every sample is still seen exactly once, no batch too big."""
    from athanor.data.order import ShardOrder

    orders = [ShardOrder(n, batch, rank=r, world=world) for r in range(world)]
    batches = [list(order.batches()) for order in orders]
    assert len({len(b) for b in batches}) == 1 and all(
        len(o) == len(b) for o, b in zip(orders, batches, strict=True)
    )
    assert max(len(x) for rank in batches for x in rank) <= batch
    seen = sorted(int(i) for rank in batches for x in rank for i in x)
    assert seen == list(range(n))


def test_one_sample_a_batch_per_rank_makes_no_empty_evaluation_batch():
    """A shard smaller than the batch count (a global batch of 2 on 2 ranks) keeps one sample a
    batch: an empty batch's mean loss is NaN and fails the run."""
    from athanor.data.order import ShardOrder

    batches = [list(ShardOrder(359, 1, rank=r, world=2).batches()) for r in range(2)]
    assert [len(b) for b in batches] == [180, 179] and all(len(x) == 1 for b in batches for x in b)


def test_weighted_sampler_balances_an_imbalanced_data_set():
    labels = torch.tensor([0] * 90 + [1] * 10)
    split = TensorSplit(torch.zeros(100, 1, 4, 4, dtype=torch.uint8), labels)
    bundle = DataBundle(split, split, 2, 1, 4, ["a", "b"], [0.5], [0.5])

    def drawn(sampler: str) -> float:
        options = DataOptions(batch_size=10, sampler=sampler)
        built = build_loaders(bundle, options, Augmentation(), None, seed=0, d=Dist(), device=CPU)
        seen = torch.cat([b.labels for e in range(5) for b in built.train.epoch(e)])
        return seen.float().mean().item()  # fraction of class 1

    assert drawn("random") == pytest.approx(0.1)
    assert 0.4 < drawn("weighted") < 0.6


def test_options_a_data_set_would_ignore_are_refused_before_any_work():
    with pytest.raises(ConfigError, match="data.val_split=0.1 does not apply to data set 'fake'"):
        validate(compose("data=fake", "data.val_split=0.1"))
    with pytest.raises(ConfigError, match="applies to: csv"):
        validate(compose("data=cifar10", "data.annotations=x.csv"))
    with pytest.raises(ConfigError, match="data.download=True does not apply to data set 'csv'"):
        validate(compose("data=csv", "data.download=true"))
    with pytest.raises(ConfigError, match="class_names lists 2 names"):
        build_data(compose(*SMALL, "data.class_names=[a,b]"))


def test_missing_cifar_files_exit_with_a_clear_message(train, tmp_path):
    result = train("data=cifar10", f"data.root={tmp_path}/nowhere", *FAST, expect=2)
    assert "data.download=true" in result.stderr and "Traceback" not in result.stderr
    assert str((tmp_path / "nowhere" / "cifar-10-batches-py").resolve()) in result.stderr


def test_cifar10_files_train_end_to_end(train, tmp_path):
    write_cifar10(tmp_path / "files")
    result = train(
        "data=cifar10",
        f"data.root={tmp_path / 'files'}",
        "data.batch_size=8",
        "model=simple_cnn",
        "augment=cifar",
        "trainer.max_steps=2",
        "logger.tensorboard=false",
        *FAST,
    )
    log = (result.run_dir / "train.log").read_text()
    assert (
        "data cifar10: 40 train / 16 val / 16 test samples (val = the official test split)" in log
    )
    assert "data path: memory" in log
    summary = result.summary()
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert "val/acc" in summary["final"]


def test_imagefolder_trains_end_to_end_on_the_dataloader_path(train, tmp_path):
    write_png_tree(tmp_path / "pics" / "train", ["ant", "bee"], per_class=6, size=20, seed=1)
    write_png_tree(tmp_path / "pics" / "val", ["ant", "bee"], per_class=2, size=20, seed=2)
    result = train(
        "data=imagefolder",
        f"data.root={tmp_path / 'pics'}",
        "data.image_size=16",
        "data.batch_size=4",
        "data.num_workers=0",
        "model=simple_cnn",
        "augment=imagenet",
        "trainer.max_steps=3",
        "logger.tensorboard=false",
        *FAST,
    )
    log = (result.run_dir / "train.log").read_text()
    assert "12 train / 4 val samples" in log and "read per sample" in log
    assert "data path: torch" in log and "random resized crop 16 per sample" in log
    assert result.summary()["steps"] == 3


def test_memory_path_falls_back_when_over_budget(caplog):
    with caplog.at_level(logging.INFO):
        assert loaders("data.memory_budget_mb=0.01").path == "torch"
    assert "exceeds data.memory_budget_mb=0; using the DataLoader path" in caplog.text


def test_image_files_on_the_memory_path_give_the_dataloader_batches(tmp_path):
    write_png_tree(tmp_path / "train", ["a", "b"], per_class=8, size=10, seed=1)
    write_png_tree(tmp_path / "val", ["a", "b"], per_class=2, size=10, seed=2)

    def folder(loader: str):
        config = compose(
            "data=imagefolder",
            f"data.root={tmp_path}",
            "data.image_size=8",
            "data.batch_size=4",
            "data.num_workers=0",
            f"data.loader={loader}",
            "augment=cifar",
            "augment.padding=2",
        )
        bundle, options = build_data(config)
        augmentation, _ = build_augmentation(config, bundle)
        return build_loaders(bundle, options, augmentation, None, seed=3, d=Dist(), device=CPU)

    memory, files = folder("memory"), folder("auto")
    assert (memory.path, files.path) == ("memory", "torch")
    assert memory.train.images.shape == (16, 3, 8, 8)  # decoded once, resized + centre-cropped
    assert same(batches(memory.train, 1), batches(files.train, 1))
    assert same(batches(memory.val, 0), batches(files.val, 0))


@pytest.mark.parametrize("loader", ["memory", "torch"])
def test_ranks_together_see_the_single_process_batches(loader):
    # 45 samples in global batches of 8 without drop_last: the last batch (5) splits 3 + 2
    config = compose(
        *SMALL,
        "data.num_train=45",
        "data.drop_last=false",
        f"data.loader={loader}",
        "augment=random_erasing",
        "augment.padding=2",
        "augment.p=1.0",
    )
    bundle, options = build_data(config)
    augmentation, _ = build_augmentation(config, bundle)

    def epoch(rank: int, world: int) -> list:
        built = build_loaders(
            bundle, options, augmentation, None, seed=0, d=Dist(rank, rank, world), device=CPU
        )
        return list(built.train.epoch(1))

    single = epoch(0, 1)
    ranks = [epoch(0, 2), epoch(1, 2)]
    assert len(single) == 6 and [len(b.labels) for b in ranks[1]][-1] == 2
    for b, whole in enumerate(single):
        joined = torch.cat([ranks[0][b].inputs, ranks[1][b].inputs])
        assert torch.equal(joined, whole.inputs), f"batch {b} differs between 1 and 2 processes"
