"""The hand-written PyTorch loops athanor is measured against (scripts/bench.py).

Minimal on purpose: what someone would write without a runner. Data is the same uint8 tensor in
memory, batches are gathered by a per-epoch permutation, normalized, and fed to the same model
with the same optimizer. Run as a script it trains the `digits_quick` recipe and prints JSON lines
(first step, per-epoch validation accuracy) for the time-to-accuracy and memory rows.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


def normalized(x_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x_uint8.float().div_(255.0) - mean) / std


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    mean: list[float],
    std: list[float],
    batch_size: int,
    steps: int,
    seed: int = 0,
) -> None:
    """``steps`` optimizer steps over shuffled full batches of the in-memory uint8 images."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    gen = torch.Generator().manual_seed(seed)
    per_epoch = len(images) // batch_size
    model.train()
    done = 0
    while done < steps:
        perm = torch.randperm(len(images), generator=gen)
        for b in range(min(per_epoch, steps - done)):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            loss = F.cross_entropy(model(normalized(images[idx], m, s)), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        done += min(per_epoch, steps - done)


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean, std) -> float:
    model.eval()
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    hits = (model(normalized(images, m, s)).argmax(1) == labels).sum().item()
    model.train()
    return hits / len(labels)


def digits_run(epochs: int = 15, batch_size: int = 64, lr: float = 3.0e-3, seed: int = 0) -> None:
    """The digits_quick recipe by hand: MLP 64-256-128-10, AdamW, per-step cosine, 15 epochs."""
    from athanor.data.builtin import digits  # the same bytes athanor trains on
    from athanor.process.clock import process_age

    torch.manual_seed(seed)
    data = digits(val_split=0.2)
    train, val = data.train, data.val
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 256),
        nn.ReLU(inplace=True),
        nn.Linear(256, 128),
        nn.ReLU(inplace=True),
        nn.Linear(128, 10),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1.0e-4)
    per_epoch = len(train) // batch_size
    total = epochs * per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * i / total))
    )
    m = torch.tensor(data.mean).view(1, -1, 1, 1)
    s = torch.tensor(data.std).view(1, -1, 1, 1)
    first = True
    for epoch in range(epochs):
        perm = torch.randperm(len(train))
        for b in range(per_epoch):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            loss = F.cross_entropy(model(normalized(train.images[idx], m, s)), train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if first:
                first = False
                print(json.dumps({"first_step_s": process_age()}), flush=True)
        acc = accuracy(model, val.images, val.labels, data.mean, data.std)
        print(json.dumps({"epoch": epoch + 1, "val/acc": acc, "time": time.time()}), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    digits_run(epochs=args.epochs, seed=args.seed)


if __name__ == "__main__":
    sys.exit(main())
