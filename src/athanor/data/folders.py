"""Image files on disk, read per sample (DataLoader path): `imagefolder` (class sub-folders, the
ImageNet layout) and `csv` (an annotations file of `path,label` rows, like a custom Dataset).

Files are listed with torchvision's own ImageFolder helpers (``find_classes``, ``make_dataset``,
``IMG_EXTENSIONS``) and decoded with ``torchvision.io.decode_image`` (several times faster than
PIL for PNG/JPEG); formats it cannot decode (BMP, TIFF, PGM) go through PIL.

Nothing is trusted (see verify.py): CSV paths must stay inside data.root, ``data.verify`` decodes
a seeded sample or every file before the first step, ``data.on_bad_file=skip`` leaves bad files
out (listed in ``DataBundle.skipped_files``), and a file that fails later is named with its row.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from athanor.data.base import DataBundle, DatasetSplit
from athanor.data.registry import DATASETS
from athanor.data.split import holdout
from athanor.data.verify import (
    BadDataError,
    BadFile,
    OnBadFile,
    Verify,
    check_classes,
    check_file,
    inside_root,
    log_skipped,
    verify_files,
)
from athanor.errors import ConfigError

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
TORCHVISION_DECODES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}


def read_image(path: str, channels: int) -> torch.Tensor:
    """uint8 [channels, H, W] from an image file."""
    from torchvision.io import ImageReadMode, decode_image

    if Path(path).suffix.lower() in TORCHVISION_DECODES:
        mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
        return decode_image(path, mode=mode)
    from PIL import Image
    from torchvision.transforms.v2.functional import pil_to_tensor

    with Image.open(path) as image:
        return pil_to_tensor(image.convert("RGB" if channels == 3 else "L"))


class ImageFiles(Dataset):
    """``dataset[i] -> (uint8 [C, H, W], label)`` over a list of image paths; a file that fails
    to decode is named with where it is listed (``wheres[i]``) and the data set."""

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int],
        channels: int,
        dataset: str,
        wheres: Sequence[str],
    ):
        self.paths, self.labels, self.channels = list(paths), list(labels), channels
        self.dataset, self.wheres = dataset, list(wheres)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            return read_image(self.paths[i], self.channels), self.labels[i]
        except Exception:
            again = check_file(self.paths[i], lambda p: read_image(p, self.channels))
            reason = again or "it could not be read (it decodes now: was it being written?)"
            raise BadDataError(
                f"data {self.dataset}: {self.paths[i]} ({self.wheres[i]}): {reason} during "
                "training. Replace or remove the file; data.verify=all checks every file before "
                "the first step (with data.on_bad_file=skip to leave the bad ones out)."
            ) from None


@dataclass(frozen=True)
class Checks:
    """How a split's files are checked before training (data.verify, data.on_bad_file)."""

    dataset: str
    channels: int
    verify: Verify = "sample"
    on_bad_file: OnBadFile = "error"


def _split(
    samples: Sequence[tuple[str, int]], wheres: Sequence[str], checks: Checks, bad: list[BadFile]
) -> DatasetSplit:
    """The split of ``samples`` after ``checks``; skipped files are appended to ``bad``."""
    paths = [p for p, _ in samples]
    keep, found = verify_files(
        paths,
        wheres,
        lambda p: read_image(p, checks.channels),
        dataset=checks.dataset,
        verify=checks.verify,
        on_bad_file=checks.on_bad_file,
    )
    bad.extend(found)
    labels = [samples[i][1] for i in keep]
    files = ImageFiles(
        [paths[i] for i in keep], labels, checks.channels, checks.dataset, [wheres[i] for i in keep]
    )
    return DatasetSplit(files, labels)


def _check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise ConfigError(f"data.channels={channels} must be 1 (grey) or 3 (RGB).")


def _bundle(
    train: DatasetSplit,
    val: DatasetSplit,
    test: DatasetSplit | None,
    class_names: list[str],
    image_size: int,
    checks: Checks,
    val_source: str,
    bad: list[BadFile],
) -> DataBundle:
    channels, grey = checks.channels, checks.channels == 1
    log_skipped(checks.dataset, bad, checks.verify)
    return DataBundle(
        train=train,
        val=val,
        test=test,
        num_classes=len(class_names),
        channels=channels,
        image_size=image_size,
        class_names=class_names,
        mean=[0.449] if grey else IMAGENET_MEAN,
        std=[0.226] if grey else IMAGENET_STD,
        info={"val": val_source},
        skipped_files=[b.as_dict() for b in bad],
    )


def _train_val(
    train: DatasetSplit, val: DatasetSplit | None, val_split: float | None, where: str
) -> tuple[DatasetSplit, DatasetSplit, str]:
    if val is not None:
        if val_split:
            raise ConfigError(
                f"data.val_split={val_split} but {where} already has a validation set; remove "
                "data.val_split (or the separate validation set) so the choice is unambiguous."
            )
        return train, val, f"val = {where}"
    if not val_split:
        raise ConfigError(
            f"{where} has no validation set: pass data.val_split=0.1 (a seeded hold-out of the "
            "training images) or provide one."
        )
    train, val = holdout(train, val_split)
    return train, val, f"val = {val_split:g} of train held out (seeded)"


def _list_folder(folder: Path, classes: list[str], allow_empty: bool) -> list[tuple[str, int]]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    index = {c: i for i, c in enumerate(classes)}
    try:
        return make_dataset(folder, index, extensions=IMG_EXTENSIONS, allow_empty=allow_empty)
    except FileNotFoundError as err:
        raise ConfigError(f"data imagefolder: {folder.resolve()}: {err}") from err


@DATASETS.register("imagefolder")
def imagefolder(
    *,
    root: str = "data",
    val_split: float | None = None,
    image_size: int | None = 224,
    channels: int = 3,
    verify: Verify = "sample",
    on_bad_file: OnBadFile = "error",
) -> DataBundle:
    """Class sub-folders of images (ImageNet layout: train/, val/[, test/]), read per sample.

    <root>/train/<class>/<image> with <root>/val/..., or <root>/<class>/<image> split by
    data.val_split. Labels of val/ and test/ use the training folder's class indices."""
    from torchvision.datasets.folder import find_classes

    _check_channels(channels)
    base = Path(root)
    train_dir = base / "train" if (base / "train").is_dir() else base
    try:
        classes, _ = find_classes(train_dir)
    except FileNotFoundError as err:
        raise ConfigError(
            f"data imagefolder: data.root={root!r} ({base.resolve()}) holds no class folders: "
            "expected <root>/train/<class>/<image> (with <root>/val/...) or <root>/<class>/<image> "
            "with data.val_split."
        ) from err
    checks, bad = Checks("imagefolder", channels, verify, on_bad_file), []

    def listed(folder: Path, split: str, allow_empty: bool) -> DatasetSplit:
        samples = _list_folder(folder, classes, allow_empty)
        return _split(samples, [f"{split} index {i}" for i in range(len(samples))], checks, bad)

    train = listed(train_dir, "train", allow_empty=False)
    # val/test may lack some classes; their labels use the training folder's class indices
    extra = {
        name: listed(base / name, name, allow_empty=True)
        for name in ("val", "test")
        if train_dir != base and (base / name).is_dir()
    }
    check_classes(classes, train.labels.tolist(), "imagefolder")  # before any hold-out
    train, val, source = _train_val(train, extra.get("val"), val_split, f"{base}/val")
    size = image_size or 224
    return _bundle(train, val, extra.get("test"), classes, size, checks, source, bad)


def _read_rows(path: Path, path_column: str, label_column: str) -> list[tuple[str, str]]:
    """The (path, label) rows of an annotation file; a file that is not such a CSV is named."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = {path_column, label_column} - set(reader.fieldnames or [])
            if missing:
                found = f"columns {reader.fieldnames}" if reader.fieldnames else "no header (empty)"
                raise ConfigError(
                    f"data csv: {path} has {found}, not {sorted(missing)}; set "
                    "data.path_column / data.label_column to the header names of your file."
                )
            rows = [(row[path_column], row[label_column]) for row in reader]
    except (UnicodeDecodeError, csv.Error) as err:
        raise BadDataError(
            f"data csv: {path} is not a readable UTF-8 CSV file ({err}); write it as UTF-8 text "
            "with a header and `path,label` rows."
        ) from None
    for r, (image, label) in enumerate(rows, start=1):
        if not image or label is None or label == "":
            raise BadDataError(
                f"data csv: row {r} (line {r + 1}) of {path} has no {path_column!r} or no "
                f"{label_column!r} value ({image!r}, {label!r}); every row needs both."
            )
    return rows


def _sorted_labels(labels: set[str]) -> list[str]:
    """Class names from the label column: numeric labels in numeric order, otherwise sorted."""
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def _locate(path: str, root: Path, key: str) -> Path:
    for candidate in (Path(path), root / path):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"data csv: {key}={path!r} is neither a file nor a file under data.root ({root.resolve()})."
    )


def _csv_split(
    rows: list[tuple[str, str]],
    root: Path,
    index: dict[str, int],
    source: Path,
    checks: Checks,
    bad: list[BadFile],
) -> DatasetSplit:
    unknown = sorted({label for _, label in rows} - set(index))
    if unknown:
        raise ConfigError(
            f"data csv: {source} has labels absent from the training file: {unknown}."
        )
    # rows count from 1 after the header, which is line 1 of the file
    wheres = [f"row {r} (line {r + 1}) of {source}" for r in range(1, len(rows) + 1)]
    paths = [str(inside_root(p, root, w, "csv")) for (p, _), w in zip(rows, wheres, strict=True)]
    absent = [(p, w) for p, w in zip(paths, wheres, strict=True) if not Path(p).is_file()]
    if absent:
        raise ConfigError(
            f"data csv: {len(absent)} image(s) listed in {source} do not exist under data.root "
            f"({root.resolve()}), e.g. {absent[0][0]} ({absent[0][1]})."
        )
    samples = [(p, index[label]) for p, (_, label) in zip(paths, rows, strict=True)]
    return _split(samples, wheres, checks, bad)


@DATASETS.register("csv")
def csv_images(
    *,
    root: str = "data",
    annotations: str | None = None,
    val_annotations: str | None = None,
    val_split: float | None = None,
    path_column: str = "path",
    label_column: str = "label",
    image_size: int | None = 224,
    channels: int = 3,
    verify: Verify = "sample",
    on_bad_file: OnBadFile = "error",
) -> DataBundle:
    """Images listed in a CSV (data.annotations: `path,label` rows, paths under data.root)."""
    _check_channels(channels)
    if not annotations:
        raise ConfigError(
            "data=csv needs data.annotations=<file.csv> with a header and `path,label` rows "
            "(paths relative to data.root)."
        )
    base = Path(root)
    source = _locate(annotations, base, "data.annotations")
    rows = _read_rows(source, path_column, label_column)
    if not rows:
        raise ConfigError(f"data csv: {source} lists no images.")
    classes = _sorted_labels({label for _, label in rows})
    index = {c: i for i, c in enumerate(classes)}
    checks, bad = Checks("csv", channels, verify, on_bad_file), []
    train = _csv_split(rows, base, index, source, checks, bad)
    val = None
    if val_annotations:
        val_source = _locate(val_annotations, base, "data.val_annotations")
        val_rows = _read_rows(val_source, path_column, label_column)
        val = _csv_split(val_rows, base, index, val_source, checks, bad)
    check_classes(classes, train.labels.tolist(), "csv")  # before any hold-out
    train, val, where = _train_val(train, val, val_split, str(val_annotations or source))
    return _bundle(train, val, None, classes, image_size or 224, checks, where, bad)
