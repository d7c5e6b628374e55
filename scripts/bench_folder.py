"""The folder row's baseline (scripts/bench.py --rows folder): the torchvision reference recipe
(`references/classification/train.py`) cut to its loop, on a folder of PNGs the bench writes.

ImageFolder (PIL) + RandomResizedCrop + flip + ToTensor + Normalize in DataLoader workers (the
reference's DataLoader arguments: no persistent workers), a torchvision resnet18, SGD with per-step cosine, a validation pass (Resize + CenterCrop) every
epoch, last weights saved each epoch. It prints one JSON line per epoch: what someone would write
without a runner, at the settings athanor's side is given.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader
from torchvision import transforms as T

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # ImageNet's, as data=imagefolder


def write_pngs(root: Path, classes: int, train_per_class: int, val_per_class: int) -> None:
    """root/{train,val}/<class>/<i>.png: 32 px RGB images, a class-dependent colour plus noise."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / f"class_{c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            base = torch.tensor([c * 25, 255 - c * 25, (c * 70) % 256]).view(3, 1, 1)
            for i in range(count):
                noise = torch.randint(-60, 61, (3, 32, 32), generator=gen)
                pixels = (base + noise).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")


def loaders(root: Path, size: int, batch_size: int, workers: int) -> tuple[DataLoader, DataLoader]:
    normalize = [T.ToTensor(), T.Normalize(MEAN, STD)]
    train_tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), *normalize])
    val_tf = T.Compose([T.Resize(round(size / 0.875)), T.CenterCrop(size), *normalize])
    train = torchvision.datasets.ImageFolder(str(root / "train"), train_tf)
    val = torchvision.datasets.ImageFolder(str(root / "val"), val_tf)
    # the reference's DataLoader arguments: its workers start afresh each epoch and each pass
    common = {"batch_size": batch_size, "num_workers": workers}
    return (
        DataLoader(train, shuffle=True, drop_last=True, **common),
        DataLoader(val, shuffle=False, **common),
    )


def run(root: Path, out: Path, epochs: int, size: int, batch_size: int, workers: int) -> None:
    torch.manual_seed(0)
    train, val = loaders(root, size, batch_size, workers)
    model = torchvision.models.resnet18(num_classes=len(train.dataset.classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    total = epochs * len(train)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * i / total))
    )
    for epoch in range(epochs):
        started = time.perf_counter()
        model.train()
        for images, labels in train:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        hits = 0
        with torch.no_grad():
            for images, labels in val:
                hits += (model(images).argmax(1) == labels).sum().item()
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, out)
        record = {"epoch": epoch + 1, "val/acc": hits / len(val.dataset)}
        print(json.dumps({**record, "epoch_s": time.perf_counter() - started}), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--out", type=Path, default=Path("hand_last.pt"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    run(args.root, args.out, args.epochs, args.size, args.batch_size, args.workers)


if __name__ == "__main__":
    sys.exit(main())
