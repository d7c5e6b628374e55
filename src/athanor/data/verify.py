"""Reading data files without trusting them: no file runs code, and a damaged file is named.

- ``load_pickle``: CIFAR's python batches through an unpickler that admits only plain containers,
  strings, numbers and numpy arrays (``pickle.load``, which torchvision's CIFAR reader uses, runs
  whatever callable a crafted file names);
- ``read_idx``: MNIST's idx files with their magic number, dimensions and length checked;
- ``inside_root``: a path from an annotation file, refused unless it resolves inside data.root;
- ``verify_files``: decode a seeded sample (``data.verify=sample``) or every file (``all``) of a
  per-sample split before the first step, and either refuse the first bad file
  (``data.on_bad_file=error``) or leave the bad ones out and list them (``skip``);
- ``check_classes``: classification needs at least two classes.

Every refusal is a ``BadDataError`` (a ``ConfigError``: one paragraph, exit code 2) that names the
data set and the file, and the row or index where there is one.
"""

from __future__ import annotations

import logging
import pickle
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from athanor.errors import ConfigError, short_reason

log = logging.getLogger(__name__)

Verify = Literal["none", "sample", "all"]
OnBadFile = Literal["error", "skip"]
SAMPLE_SIZE = 64  # files decoded per split by data.verify=sample
SAMPLE_SEED = 20240101  # fixed: the same files are checked on every run of the same data


class BadDataError(ConfigError):
    """A data file that cannot be read, named with its data set (and row or index).

    A DataLoader worker re-raises an exception as ``type(msg)`` with the worker's whole traceback
    in ``msg``; the last line of that traceback is our own message, which is all we keep."""

    def __init__(self, message: str):
        if message.startswith("Caught ") and "Traceback" in message:
            last = message.rstrip().splitlines()[-1]
            message = last.split(": ", 1)[1] if ": " in last else last
        super().__init__(message)


# -- pickles ---------------------------------------------------------------------------------

# What a numpy array needs to rebuild itself from a pickle (numpy 1 and 2 spell the module
# differently); `_codecs.encode` rebuilds bytes in protocol-2 pickles. Nothing else is callable,
# so even an object array can only hold more of the same plain data.
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"it asks for {module}.{name}, which is not plain data (containers, strings, "
                "numbers, numpy arrays)"
            )
        return super().find_class(module, name)


def load_pickle(path: Path, dataset: str) -> Any:
    """The plain data in a python-pickle file, never running code from it."""
    where = f"data {dataset}: {path}"
    try:
        with path.open("rb") as f:
            obj = _PlainUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as err:
        raise BadDataError(
            f"{where} is refused: {err}. A data batch holds only plain data; this file is "
            "damaged or crafted, and was not executed. Replace it with the original file."
        ) from None
    except Exception as err:  # EOFError, ValueError, ...: truncated or not a pickle at all
        size = path.stat().st_size
        raise BadDataError(
            f"{where} cannot be read ({type(err).__name__}: {err}; {size} bytes): the file is "
            "truncated, empty or not a python batch. Replace it with the original file "
            "(data.download=true fetches the archive again)."
        ) from None
    return obj


# -- idx (MNIST) -----------------------------------------------------------------------------


def read_idx(path: Path, dataset: str, ndim: int) -> np.ndarray:
    """uint8 array from an idx file (MNIST): magic 0, 0, 0x08 (uint8), ``ndim``; then dims."""
    data = path.read_bytes()
    fix = "Replace it with the original file (data.download=true fetches it again)."
    if len(data) < 4 + 4 * ndim:
        raise BadDataError(
            f"data {dataset}: {path} has {len(data)} bytes, too short for an idx header: the file "
            f"is empty or truncated. {fix}"
        )
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] != ndim:
        raise BadDataError(
            f"data {dataset}: {path} has the wrong magic number {data[:4].hex()} (expected "
            f"000008{ndim:02x}: uint8 idx with {ndim} dimension(s)); it is not this kind of idx "
            f"file (or it is still gzip-compressed). {fix}"
        )
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = data[4 + 4 * ndim :]
    expected = int(np.prod(dims))
    if len(body) != expected:
        raise BadDataError(
            f"data {dataset}: {path} declares {'x'.join(map(str, dims))} = {expected} bytes of "
            f"data but holds {len(body)}: the file is truncated or damaged. {fix}"
        )
    return np.frombuffer(bytearray(body), dtype=np.uint8).reshape(dims)  # writable, for torch


# -- paths from annotation files -------------------------------------------------------------


def inside_root(path: str, root: Path, where: str, dataset: str) -> Path:
    """``root / path`` resolved (symlinks followed), refused when it lands outside ``root``;
    ``where`` says where the path was read ("row 3 (line 4) of train.csv")."""
    base = root.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(base):
        raise BadDataError(
            f"data {dataset}: {where} names {path!r}, which resolves to {target}, "
            f"outside data.root ({base}). Paths in an annotation file must stay inside data.root "
            "(symlinks included); move the image under data.root or point data.root higher."
        )
    return target


# -- decoding before the first step ----------------------------------------------------------


@dataclass(frozen=True)
class BadFile:
    """A file that failed to decode: where it is listed and why."""

    file: str
    where: str  # "row 3 of train.csv" or "train index 7"
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "where": self.where, "reason": self.reason}


def check_file(path: str, decode: Callable[[str], Any]) -> str | None:
    """Why ``path`` cannot be used as an image, or None when it decodes."""
    try:
        if Path(path).stat().st_size == 0:
            return "the file is empty (0 bytes)"
        decode(path)
    except Exception as err:  # any decoder failure (RuntimeError, OSError, PIL's errors)
        return f"it cannot be decoded ({short_reason(str(err)) or type(err).__name__})"
    return None


def _chosen(n: int, verify: Verify) -> list[int]:
    if verify == "all" or n <= SAMPLE_SIZE:
        return list(range(n))
    return sorted(random.Random(SAMPLE_SEED).sample(range(n), SAMPLE_SIZE))


def verify_files(
    paths: Sequence[str],
    wheres: Sequence[str],
    decode: Callable[[str], Any],
    *,
    dataset: str,
    verify: Verify,
    on_bad_file: OnBadFile,
) -> tuple[list[int], list[BadFile]]:
    """-> (indices to keep, bad files). Decodes the files ``verify`` chooses; the first bad one is
    an error unless ``on_bad_file='skip'``, which leaves it out and lists it."""
    bad: list[BadFile] = []
    if verify != "none":
        for i in _chosen(len(paths), verify):
            reason = check_file(paths[i], decode)
            if reason is None:
                continue
            found = BadFile(paths[i], wheres[i], reason)
            if on_bad_file == "error":
                raise BadDataError(
                    f"data {dataset}: {found.file} ({found.where}): {reason}. Replace or remove "
                    "the file, or pass data.on_bad_file=skip to leave unreadable files out (they "
                    "are counted and listed in the log and the run summary)."
                )
            bad.append(found)
    skipped = {b.file for b in bad}
    return [i for i, p in enumerate(paths) if p not in skipped], bad


def log_skipped(dataset: str, bad: Sequence[BadFile], verify: Verify) -> None:
    if bad:
        listed = "; ".join(f"{b.file} ({b.where}: {b.reason})" for b in bad)
        log.warning(
            "data %s: skipped %d unreadable file(s) (data.on_bad_file=skip, data.verify=%s): %s",
            dataset,
            len(bad),
            verify,
            listed,
        )


def check_classes(class_names: Sequence[str], labels: Sequence[int] | Any, dataset: str) -> None:
    """Refuse training data whose labels hold fewer than two classes (nothing to tell apart)."""
    found = sorted({int(v) for v in labels})
    if len(found) < 2:
        seen = ", ".join(repr(class_names[c]) if c < len(class_names) else str(c) for c in found)
        raise BadDataError(
            f"data {dataset}: the training data holds one class only ({seen or 'none'}); "
            "classification needs at least two. Check data.root and the labels (a class folder "
            "per class, or a label column with two or more values)."
        )
