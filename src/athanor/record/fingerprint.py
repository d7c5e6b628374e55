"""A fingerprint of the data a run trained on, so a re-run can tell whether its data is the same.

Files and folders the data config names (``data.path``, ``data.root``, ...): each file's name,
size and a content sample (its first, middle and last 64 KiB); a folder's file count, bytes, a
hash of its listing (names and sizes) and a content sample of up to 64 of its files, spread over
the sorted listing. In-memory splits (digits, MNIST, CIFAR, ...): a hash of their tensors (every
row up to 256 MiB, else an evenly spaced sample of rows, said). Splits read per sample: their
length and a hash of their labels. Written as data_fingerprint.json beside summary.json, whose
``sha256`` summary.json holds.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from athanor.data.base import DataBundle, TensorSplit

SAMPLE_BYTES = 64 * 1024
SAMPLE_FILES = 64
TENSOR_BYTES = 256 * 1024 * 1024


def _file_sample(path: Path, size: int) -> str:
    """sha256 of the first, middle and last SAMPLE_BYTES of a file (all of a small one)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for start in sorted(
            {0, max(0, size // 2 - SAMPLE_BYTES // 2), max(0, size - SAMPLE_BYTES)}
        ):
            f.seek(start)
            digest.update(f.read(SAMPLE_BYTES))
    return digest.hexdigest()


def file_fingerprint(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    return {"name": path.name, "bytes": size, "sample_sha256": _file_sample(path, size)}


def folder_fingerprint(root: Path) -> dict[str, Any]:
    files = sorted(
        (Path(d) / name for d, _, names in os.walk(root) for name in names),
        key=lambda p: str(p.relative_to(root)),
    )
    sizes = [p.stat().st_size for p in files]
    listing = hashlib.sha256()
    for path, size in zip(files, sizes, strict=True):
        listing.update(f"{path.relative_to(root)}\t{size}\n".encode())
    sample = hashlib.sha256()
    step = max(1, len(files) // SAMPLE_FILES)
    for path, size in list(zip(files, sizes, strict=True))[::step][:SAMPLE_FILES]:
        sample.update(_file_sample(path, size).encode())
    return {
        "name": root.name,
        "files": len(files),
        "bytes": sum(sizes),
        "listing_sha256": listing.hexdigest(),
        "sample_sha256": sample.hexdigest(),
        "sampled_files": min(len(files), SAMPLE_FILES),
        "first_files": [str(p.relative_to(root)) for p in files[:5]],
    }


def tensor_hash(tensor: torch.Tensor) -> dict[str, Any]:
    """sha256 of a tensor's bytes; rows evenly sampled beyond TENSOR_BYTES."""
    t = tensor.detach().cpu().contiguous()
    total = t.numel() * t.element_size()
    rows = len(t) if t.ndim else 1
    step = max(1, -(-total // TENSOR_BYTES)) if t.ndim else 1
    if step > 1:
        t = t[::step].contiguous()
    digest = hashlib.sha256(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    out = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch.")}
    out["sha256"] = digest.hexdigest()
    if step > 1:
        out["sampled_rows"] = f"every {step}th of {rows}"
    return out


def split_fingerprint(split: Any) -> dict[str, Any]:
    if isinstance(split, TensorSplit):
        return {
            "samples": len(split),
            "images": tensor_hash(split.images),
            "labels": tensor_hash(split.labels),
        }
    labels = getattr(split, "labels", None)
    out: dict[str, Any] = {"samples": len(split)}
    if isinstance(labels, torch.Tensor):
        out["labels"] = tensor_hash(labels)
    return out


def named_paths(data_config: dict[str, Any]) -> dict[str, Path]:
    """The data config's string values that name an existing file or folder."""
    found = {}
    for key, value in data_config.items():
        if isinstance(value, str) and value and key != "name":
            path = Path(value).expanduser()
            if path.exists():
                found[key] = path
    return found


def data_fingerprint(data_config: dict[str, Any], bundle: DataBundle) -> dict[str, Any]:
    """The fingerprint of the run's data: the named files and folders, then the built splits."""
    paths = {
        key: folder_fingerprint(p) if p.is_dir() else file_fingerprint(p)
        for key, p in named_paths(data_config).items()
    }
    splits = {
        name: split_fingerprint(s)
        for name, s in (("train", bundle.train), ("val", bundle.val), ("test", bundle.test))
        if s is not None
    }
    return {"data": data_config.get("name"), "paths": paths, "splits": splits}


def digest(fingerprint: dict[str, Any]) -> str:
    """One hash of the whole fingerprint: equal digests, equal data (as far as it is sampled)."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()
