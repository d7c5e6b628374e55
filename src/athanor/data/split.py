"""Seeded, stable train/val hold-out: the same samples land in val on every run and machine."""

from __future__ import annotations

import torch

from athanor.data.base import Split

SPLIT_SEED = 20240101  # fixed on purpose: changing `seed` must not move samples between splits


def holdout(split: Split, fraction: float) -> tuple[Split, Split]:
    """-> (train, val): a fixed random ``fraction`` of the samples (at least one) goes to val."""
    n = len(split)
    n_val = max(1, int(round(n * fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return split.select(order[n_val:].sort().values), split.select(order[:n_val].sort().values)


def train_val_test(
    train: Split, test: Split | None, val_split: float | None
) -> tuple[Split, Split, Split | None, str]:
    """The choice every data set with an official test split makes, in one place:

    - no ``val_split``: validate on the official test split (what the papers report), test = it;
    - ``val_split``: hold out that fraction of train for validation and keep test untouched.

    -> (train, val, test, a few words saying where val came from)."""
    if val_split:
        train, val = holdout(train, val_split)
        return train, val, test, f"val = {val_split:g} of train held out (seeded)"
    if test is None:
        raise AssertionError("a data set without a test split must be given a val_split")
    return train, test, test, "val = the official test split"
