"""The two data paths. Both yield ``Batch(inputs, targets, labels)`` on the training device with
inputs normalized float [B, C, H, W]:

- memory: the split lives once as uint8 on the device; batches are gathered by index and
  augmented with tensor ops (no worker processes, no per-sample Python).
- torch: a DataLoader reads samples in worker processes (folders, CSV, or per-sample policies
  such as RandAugment), then the same batch ops run on the device.

Randomness comes from generators seeded by (seed, epoch, batch) or (seed, epoch, sample), so the
batches are the same whatever the number of workers, and a resumed run sees the same data: a
training batch is a pure function of (seed, epoch, batch index). Under DDP the batch ops draw for
the whole global batch and each rank keeps its shard's rows (``Draws``), so a sample is augmented
the same way whatever the number of processes (mixup/cutmix pair images within a rank's shard).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from athanor.augment.base import Augmentation, Draws
from athanor.data.base import Split, TensorSplit
from athanor.data.options import DataOptions
from athanor.data.order import Order, epoch_generator

log = logging.getLogger(__name__)


class Batch(NamedTuple):
    inputs: torch.Tensor  # float [B, C, H, W], normalized
    targets: torch.Tensor  # int64 [B] class indices, or float [B, K] soft targets (mixup)
    labels: torch.Tensor  # int64 [B] for accuracy


class Normalize:
    """uint8 -> float in [0, 1] (what batch ops see), then standardize with the data's mean/std."""

    def __init__(self, mean: list[float], std: list[float], device: torch.device):
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        # (x / 255 - mean) / std as (x - 255 mean) / (255 std): see inputs()
        self.mean_255, self.std_255 = self.mean * 255.0, self.std * 255.0

    def __call__(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return x_uint8.float().div_(255.0)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        # in place: x is this batch's own float copy (from __call__ or a batch op), and two
        # fresh [B, C, H, W] buffers per batch cost more than the arithmetic on CPU
        return x.sub_(self.mean).div_(self.std)

    def inputs(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """A uint8 batch as the model sees it, when no batch op comes between scaling and
        standardizing: two ops instead of four (the subtraction promotes uint8 to float)."""
        return x_uint8.sub(self.mean_255).div_(self.std_255)


Mixer = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


class DeviceBatches:
    """What both paths do once a uint8 batch is on the device: augment, normalize, mix."""

    def __init__(
        self,
        normalize: Normalize,
        augmentation: Augmentation | None,
        mixer: Mixer | None,
        seed: int,
        device: torch.device,
    ):
        if augmentation is not None and not (augmentation.batch_ops or augmentation.normalized_ops):
            augmentation = None  # nothing to draw for (augment=none): skip the per-batch RNG
        self.normalize, self.augmentation, self.mixer = normalize, augmentation, mixer
        self.seed, self.device = seed, device
        self.draws_random = augmentation is not None or mixer is not None

    def draws(self, epoch: int, b: int, shard: tuple[int, int]) -> Draws:
        """Global batch ``b``'s random numbers, this rank's rows: a function of (seed, epoch, b)."""
        gen = torch.Generator(device=self.device)
        seed = epoch_generator(self.seed, epoch, 1_000_003 * (b + 1)).initial_seed()
        return Draws(gen.manual_seed(seed), *shard)

    def __call__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        epoch: int,
        b: int,
        shard: tuple[int, int] = (0, 0),  # (offset, total) of this rank's rows in the global batch
    ) -> Batch:
        if images.device != self.device:  # the memory path's batches are already there
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
        if not self.draws_random:
            return Batch(self.normalize.inputs(images), labels, labels)
        y, draws = labels, self.draws(epoch, b, shard)
        if self.augmentation is None:
            x = self.normalize.inputs(images)
        elif self.augmentation.geometric:  # crop and flip move uint8 pixels: 4x fewer bytes
            x = self.normalize.inputs(self.augmentation.apply_batch(images, draws))
        else:
            x = self.augmentation.apply_batch(self.normalize(images), draws)  # float in [0, 1]
            x = self.normalize.standardize(x)
        if self.augmentation is not None:
            x = self.augmentation.apply_normalized(x, draws)
        targets = y
        if self.mixer is not None:  # mixes within this rank's shard
            x, targets = self.mixer(x, y, draws.generator)  # soft targets [B, K]
        return Batch(x, targets, y)


# the largest float32 copy of a split the memory path keeps standardized (see MemoryLoader)
STANDARDIZED_MB = 256.0


class MemoryLoader:
    """Batches gathered from a uint8 tensor resident on the device. When no batch op draws
    random numbers (augment=none; every evaluation split), a batch is a pure function of its
    indices, so a split whose float32 copy fits ``standardize_mb`` (data.memory_budget_mb, at most
    STANDARDIZED_MB) is standardized once, up front, and each batch is one gather instead of a
    gather and two ops (the same values: elementwise ops commute with a gather)."""

    path = "memory"

    def __init__(
        self,
        split: TensorSplit,
        order: Order,
        device_batches: DeviceBatches,
        standardize_mb: float = STANDARDIZED_MB,
    ):
        device = device_batches.device
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.order, self.device_batches = order, device_batches
        self.standardized = self._standardize_once(min(standardize_mb, STANDARDIZED_MB))

    def _standardize_once(self, limit_mb: float) -> torch.Tensor | None:
        too_big = self.images.numel() * 4 > limit_mb * 2**20  # float32: 4 bytes a value
        if self.device_batches.draws_random or too_big:
            return None
        return self.device_batches.normalize.inputs(self.images)

    def __len__(self) -> int:
        return len(self.order)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        on_device = self.images.device.type == "cpu"  # the order's indices live on the CPU
        batches, sharded = self.device_batches, self.device_batches.draws_random
        standardized = self.standardized
        for b, idx in enumerate(self.order.batches(epoch, start), start=start):
            # non_blocking: CUDA stages a pageable copy at once; a blocking one would also wait
            # for every queued kernel (a device sync each batch)
            idx = idx if on_device else idx.to(self.images.device, non_blocking=True)
            # index_select, not x[idx]: rows are copied whole (12x faster on a CIFAR batch)
            labels = self.labels.index_select(0, idx)
            if standardized is not None:
                yield Batch(standardized.index_select(0, idx), labels, labels)
                continue
            shard = self.order.shard(b) if sharded else (0, 0)  # only random draws need it
            yield batches(self.images.index_select(0, idx), labels, epoch, b, shard)


def _seeded(transform: Callable, image: torch.Tensor, seed: int) -> torch.Tensor:
    """``transform(image)`` with the CPU generator seeded to ``seed``, its state restored after.
    The CPU generator itself, not ``torch.manual_seed`` under ``fork_rng``: the same random
    numbers, but ~3 us a sample instead of ~145 us (``manual_seed`` also queues a reseed of
    every accelerator's generator), which a DataLoader worker paid for every image it read."""
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        return transform(image)
    finally:
        generator.set_state(state)


class SeededSamples(Dataset):
    """Reads sample ``i`` of ``epoch`` and applies the per-sample transform under a seed derived
    from (seed, epoch, i): independent of worker count and of where a resumed epoch starts."""

    def __init__(self, split: Split, transform: Callable | None, image_size: int, seed: int):
        self.split, self.transform, self.size, self.seed = split, transform, image_size, seed

    def __len__(self) -> int:
        return len(self.split)

    def _read(self, i: int) -> tuple[torch.Tensor, int]:
        if isinstance(self.split, TensorSplit):
            return self.split.images[i], int(self.split.labels[i])
        image, label = self.split.dataset[i]
        if not isinstance(image, torch.Tensor):
            from torchvision.transforms.v2 import functional as F

            image = F.pil_to_tensor(image)
        return image, int(label)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, i = key
        image, label = self._read(i)
        if self.transform is not None:
            image = _seeded(self.transform, image, hash((self.seed, epoch, i)) & 0x7FFF_FFFF)
        if image.shape[-2:] != (self.size, self.size):
            from torchvision.transforms.v2 import functional as F

            image = F.center_crop(F.resize(image, [self.size], antialias=True), [self.size])
        return image, label


class _EpochBatches:
    """A batch sampler yielding [(epoch, index), ...] for one rank from a given batch on."""

    def __init__(self, order: Order):
        self.order = order
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        return len(self.order) - self.start

    def __iter__(self):
        for idx in self.order.batches(self.epoch, self.start):
            yield [(self.epoch, int(i)) for i in idx]


def workers_leave_stops_to_the_run(worker_id: int) -> None:
    """A DataLoader worker's ``worker_init_fn``: Ctrl-C (to the terminal's process group) and
    SLURM's SIGUSR1 (to every process of the job step) are the run's to handle: it checkpoints
    and stops its workers itself. A worker's default reaction (torch's worker loop exits on
    KeyboardInterrupt; SIGUSR1 kills) would fail the run with "worker exited unexpectedly".
    SIGTERM stays: torch's shutdown ends lingering workers with it."""
    for stop in (signal.SIGINT, signal.SIGUSR1):
        signal.signal(stop, signal.SIG_IGN)


class TorchLoader:
    """A torch DataLoader over per-sample reads; batch ops then run on the device."""

    path = "torch"

    def __init__(
        self,
        samples: SeededSamples,
        order: Order,
        device_batches: DeviceBatches,
        options: DataOptions,
    ):
        self.sampler = _EpochBatches(order)
        self.order, self.length = order, len(order)
        self.device_batches = device_batches
        workers = options.workers()
        cuda = device_batches.device.type == "cuda"
        self.loader = DataLoader(
            samples,
            batch_sampler=self.sampler,
            num_workers=workers,
            pin_memory=options.pin_memory and cuda,
            persistent_workers=options.persistent_workers and workers > 0,
            prefetch_factor=options.prefetch_factor if workers > 0 else None,
            # its own generator, seeded by the run: iterators otherwise draw worker seeds from the
            # global RNG (a resumed run, one more iterator, would see other dropout masks); the
            # per-sample transforms are seeded per (seed, epoch, sample), so worker count never matters
            generator=torch.Generator().manual_seed(samples.seed),
            worker_init_fn=workers_leave_stops_to_the_run,
        )

    def __len__(self) -> int:
        return self.length

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        self.sampler.epoch, self.sampler.start = epoch, start
        for b, (images, labels) in enumerate(self.loader, start=start):
            yield self.device_batches(images, labels, epoch, b, self.order.shard(b))


def load_into_memory(split: Split, image_size: int, options: DataOptions) -> TensorSplit:
    """Decode every sample of a per-sample split once (in DataLoader workers), resized and
    centre-cropped to ``image_size``, into a uint8 TensorSplit for the memory path."""
    if isinstance(split, TensorSplit):
        return split
    started = time.perf_counter()
    keys = [(0, i) for i in range(len(split))]
    loader = DataLoader(
        SeededSamples(split, None, image_size, seed=0),
        batch_size=256,
        sampler=keys,
        num_workers=options.workers() if len(keys) >= 2048 else 0,  # workers cost ~1 s to start
        worker_init_fn=workers_leave_stops_to_the_run,
    )
    images, labels = zip(*loader, strict=True)
    tensors = TensorSplit(torch.cat(images), torch.cat(labels))
    log.info(
        "data: decoded %d images into memory (%.0f MB) in %.1f s",
        len(tensors),
        tensors.images.numel() / 2**20,
        time.perf_counter() - started,
    )
    return tensors
