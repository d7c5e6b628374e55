"""Which samples go in which batch: a function of (seed, epoch) only, sharded by rank.

The same seed gives the same global batches whatever the number of processes or workers, so a
run can resume mid-epoch (skip the first batches) and a DDP run sees the single-process order.
"""

from __future__ import annotations

import math

import torch


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    # distinct, reproducible streams per (seed, epoch, purpose) without state carried over epochs
    return torch.Generator().manual_seed(hash((seed, epoch, stream)) & 0x7FFF_FFFF_FFFF_FFFF)


class EpochOrder:
    """Global batches of ``batch_size`` per epoch; each rank takes its contiguous slice."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool,
        drop_last: bool,
        rank: int = 0,
        world: int = 1,
        weights: torch.Tensor | None = None,
    ):
        if batch_size % world:
            from athanor.errors import ConfigError

            raise ConfigError(
                f"data.batch_size={batch_size} is the global batch and must be divisible by the "
                f"number of processes ({world})."
            )
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.shuffle, self.drop_last, self.rank, self.world = shuffle, drop_last, rank, world
        self.weights = weights  # per-sample sampling weights (data.sampler=weighted)
        if drop_last and n < batch_size:
            self.drop_last = False  # a tiny data set still yields one (smaller) batch

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def permutation(self, epoch: int) -> torch.Tensor:
        if self.weights is not None:
            gen = epoch_generator(self.seed, epoch)
            return torch.multinomial(self.weights, self.n, replacement=True, generator=gen)
        if not self.shuffle:
            return torch.arange(self.n)
        return torch.randperm(self.n, generator=epoch_generator(self.seed, epoch))

    def shard(self, b: int) -> tuple[int, int]:
        """-> (first row of this rank's shard in global batch ``b``, rows of that global batch)."""
        total = min(self.batch_size, self.n - b * self.batch_size)
        # where tensor_split(world) puts this rank's rows: the first total % world get one extra
        base, extra = divmod(total, self.world)
        return self.rank * base + min(self.rank, extra), total

    def batches(self, epoch: int, start: int = 0):
        """Yield this rank's index tensor for each global batch from batch ``start`` on."""
        order = self.permutation(epoch)
        per_rank = self.batch_size // self.world
        for b in range(start, len(self)):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            if self.world == 1:
                yield batch
            elif len(batch) == self.batch_size:
                yield batch[self.rank * per_rank : (self.rank + 1) * per_rank]
            else:  # ragged last batch: split as evenly as possible
                yield batch.tensor_split(self.world)[self.rank]


class ShardOrder:
    """Evaluation order of one rank: samples rank, rank+world, ... in batches of at most
    ``batch_size``, so every sample is seen exactly once across ranks (no padding duplicates).
    Every rank runs the same number of batches: a sharded model (FSDP) gathers its parameters
    in each forward, a collective all ranks must join (a rank holding one sample more would
    otherwise run one forward more, and wait for the others forever)."""

    def __init__(self, n: int, batch_size: int, *, rank: int = 0, world: int = 1):
        self.indices = torch.arange(rank, n, world)
        self.batch_size = batch_size
        same = math.ceil(math.ceil(n / world) / batch_size)  # the largest shard's (rank 0's)
        # split into that many batches, unless the shard is smaller than that count (one
        # sample a batch): then no empty batch. Alone, the split is the plain slicing.
        self.split = world > 1 and len(self.indices) >= same
        self.count = same if self.split else math.ceil(len(self.indices) / batch_size)

    def __len__(self) -> int:
        return self.count

    def shard(self, b: int) -> tuple[int, int]:
        del b
        return 0, 0  # evaluation batches draw no random numbers

    def batches(self, epoch: int = 0, start: int = 0):
        del epoch
        if self.split:  # as many batches on every rank, each at most batch_size
            yield from self.indices.tensor_split(self.count)[start:]
            return
        for b in range(start, self.count):
            yield self.indices[b * self.batch_size : (b + 1) * self.batch_size]


Order = EpochOrder | ShardOrder
