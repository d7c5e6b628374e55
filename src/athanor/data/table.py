"""`data=table`: a CSV or Parquet file of rows, one column the target (pandas; the
`athanor[table]` extra).

Numeric feature columns become one float vector per row, standardized (by the run, on the
device) with the training split's mean and std; a categorical (text, bool or category) column becomes one-hot columns of the
categories seen in training, or is refused (`data.categorical=refuse`). The target decides the
task: integer or text values are classes (named by their values, numbers in numeric order), float
values are regression targets (`data.target_type=float` also for whole-number targets).
The validation rows are a seeded hold-out (`data.val_split`), the same on every run, so a later
`evaluate` rebuilds the same split and the same statistics from the file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from torch.utils.data import Dataset

from athanor.data.registry import DATASETS
from athanor.data.split import SPLIT_SEED
from athanor.errors import ConfigError
from athanor.registry import closest
from athanor.typecheck import Positive

log = logging.getLogger("athanor")

READERS = {".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}


class TableSplit(Dataset):
    """Rows as (float features [F], target): a class index (int64) or a float. The features
    are as the file has them; ``mean``/``std`` (train-split statistics, per feature) are what
    the run standardizes them with (data.normalize=dataset, the default), so the checkpoint
    records them and `evaluate` applies the training run's own."""

    def __init__(self, features: torch.Tensor, targets: torch.Tensor, info: dict[str, Any]):
        self.features, self.targets = features, targets
        self.columns: list[str] = info["columns"]  # the names of the F features
        self.mean: list[float] = info["mean"]
        self.std: list[float] = info["std"]
        self.target_column: str = info["target"]  # named by the task's check of the targets
        if info.get("classes") is not None:
            self.classes: list[str] = info["classes"]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[i], self.targets[i]


def read_table(path: str | None) -> Any:
    """The file as a pandas DataFrame, or a one-paragraph error naming the path."""
    if not path:
        raise ConfigError(
            "data=table needs data.path=<file.csv or file.parquet> and data.target=<column>."
        )
    file = Path(path).expanduser()
    kind = READERS.get(file.suffix.lower())
    if kind is None:
        raise ConfigError(
            f"data.path={path}: {file.suffix or 'no suffix'} is not a table format athanor reads; "
            f"use one of {', '.join(READERS)}."
        )
    if not file.is_file():
        raise ConfigError(f"data.path={path} does not exist (a CSV or Parquet file).")
    try:
        import pandas as pd
    except ImportError:
        raise ConfigError("data=table needs pandas: pip install 'athanor[table]'.") from None
    try:
        if kind == "parquet":
            return pd.read_parquet(file)
        return pd.read_csv(file, sep="\t" if kind == "tsv" else ",")
    except ImportError as err:  # Parquet without pyarrow
        raise ConfigError(f"data.path={path}: {err} (pip install 'athanor[table]').") from err
    except Exception as err:
        raise ConfigError(f"data.path={path} could not be read as {kind}: {err}") from err


def _check_finite(values: Any, what: str) -> None:
    """Refuse NaN or inf in a column, naming it and the first bad row (the file's line)."""
    import numpy as np

    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        row = int(bad[0])
        raise ConfigError(
            f"data=table: {what} holds {values[row]} in row {row} (line {row + 2} of the file, "
            f"after the header; {len(bad)} non-finite value(s) in all). Features and targets "
            "must be finite numbers: fix or remove those rows, or leave the column out "
            "(data.drop=[...])."
        )


def _holdout(n: int, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    n_val = max(1, int(round(n * fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return order[n_val:].sort().values, order[:n_val].sort().values


def _targets(column: Any, name: str, target_type: str, train_rows: Any) -> tuple[Any, list | None]:
    """-> (targets as a tensor, class names or None for float targets)."""
    import pandas as pd

    if column.isna().any():
        raise ConfigError(
            f"data.target={name} has {int(column.isna().sum())} empty values; every row needs a "
            "target."
        )
    is_float = (
        pd.api.types.is_float_dtype(column) if target_type == "auto" else target_type == "float"
    )
    if is_float:
        try:
            values = column.to_numpy(dtype="float32")
        except ValueError as err:
            raise ConfigError(
                f"data.target={name} is not numeric ({err}), so it cannot be a float target; "
                "choose a numeric column with data.target=, or data.target_type=classes."
            ) from err
        _check_finite(values, f"target column {name!r}")
        return torch.tensor(values), None
    classes = sorted(column.iloc[train_rows].unique().tolist())
    unseen = sorted(set(column.unique().tolist()) - set(classes), key=str)
    if unseen:
        raise ConfigError(
            f"data.target={name}: the validation rows hold classes absent from the training "
            f"rows: {unseen[:5]}; add rows or change data.val_split."
        )
    index = {value: i for i, value in enumerate(classes)}
    return torch.tensor(column.map(index).to_numpy(), dtype=torch.long), [str(c) for c in classes]


def _features(frame: Any, train_rows: Any, categorical: str, max_categories: int) -> Any:
    """Numeric columns as they are, categorical ones one-hot (categories of the training rows)."""
    import pandas as pd

    parts, names = [], []
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            if column.isna().any():
                raise ConfigError(
                    f"data=table: feature column {name!r} has {int(column.isna().sum())} empty "
                    f"values; fill them in the file or leave the column out (data.drop=[{name}])."
                )
            _check_finite(column.to_numpy(dtype="float32"), f"feature column {name!r}")
            parts.append(column.astype("float32").to_frame())
            names.append(str(name))
            continue
        categories = sorted(column.iloc[train_rows].dropna().astype(str).unique().tolist())
        if categorical == "refuse" or len(categories) > max_categories:
            why = (
                "data.categorical=refuse"
                if categorical == "refuse"
                else f"{len(categories)} distinct values, more than data.max_categories="
                f"{max_categories} (an id or free text?)"
            )
            raise ConfigError(
                f"data=table: column {name!r} is not numeric ({why}). Leave it out with "
                f"data.drop=[{name}], or one-hot it with data.categorical=onehot."
            )
        values = column.astype(str).where(column.notna(), None)
        for category in categories:
            parts.append((values == category).astype("float32").rename(f"{name}={category}"))
            names.append(f"{name}={category}")
    if not parts:
        raise ConfigError(
            "data=table: no feature columns are left besides the target; the file needs at "
            "least one numeric or categorical column."
        )
    return pd.concat(parts, axis=1), names


@DATASETS.register("table", description="a CSV or Parquet table: columns -> a float vector")
def table(
    *,
    path: str | None = None,
    target: str | None = None,
    val_split: float | None = 0.2,
    target_type: Literal["auto", "classes", "float"] = "auto",
    categorical: Literal["onehot", "refuse"] = "onehot",
    max_categories: Annotated[int, Positive] = 50,
    drop: list[str] | None = None,
) -> tuple[TableSplit, TableSplit]:
    """(train, val) of standardized feature vectors and their targets."""
    frame = read_table(path)
    if not target or target not in frame.columns:
        columns = [str(c) for c in frame.columns]
        raise ConfigError(
            f"data.target={target} is not a column of {path}.{closest(str(target), columns)} "
            f"Columns: {', '.join(columns)}."
        )
    absent = [c for c in (drop or []) if c not in frame.columns]
    if absent:
        raise ConfigError(f"data.drop names {absent}, which are not columns of {path}.")
    if len(frame) < 2:
        raise ConfigError(
            f"data.path={path} has {len(frame)} rows; a train and a val split need 2."
        )
    train_rows, val_rows = _holdout(len(frame), val_split or 0.2)
    targets, classes = _targets(frame[target], target, target_type, train_rows.numpy())
    features, names = _features(
        frame.drop(columns=[target, *(drop or [])]), train_rows.numpy(), categorical, max_categories
    )
    x = torch.tensor(features.to_numpy(dtype="float32"))
    mean = x[train_rows].mean(0)
    std = x[train_rows].std(0).nan_to_num(1.0)
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant column stays as is
    info = {
        "columns": names,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "classes": classes,
        "target": str(target),
    }
    kind = f"{len(classes)} classes" if classes else "float targets"
    log.info(
        "data table: %s: %d features (%s), target %s (%s), standardized with the %d training rows",
        path,
        len(names),
        ", ".join(names[:8]) + (", …" if len(names) > 8 else ""),
        target,
        kind,
        len(train_rows),
    )
    return (
        TableSplit(x[train_rows], targets[train_rows], info),
        TableSplit(x[val_rows], targets[val_rows], info),
    )
