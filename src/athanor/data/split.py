"""Seeded, stable train/val hold-out: the same samples land in val on every run and machine."""

from __future__ import annotations

import torch

from athanor.data.base import Split

SPLIT_SEED = 20240101  # fixed on purpose: changing `seed` must not move samples between splits


def holdout(split: Split, fraction: float) -> tuple[Split, Split]:
    n = len(split)
    n_val = max(1, int(round(n * fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return split.select(order[n_val:].sort().values), split.select(order[:n_val].sort().values)
