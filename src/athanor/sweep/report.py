"""`athanor report <sweep or outputs folder>`: one table of every run found below a folder.

A row per run folder (one with a run record, ``summary.json``; a folder without one holds no
run: a config error, or a job that has not started yet): the overrides that vary between
the runs, the best and final validation metrics, epochs, wall time and status (completed, failed,
interrupted, running), best run first by the monitored metric. The table is printed and written
next to the runs as ``report.csv`` and ``report.md``; ``--plot`` adds ``report.png`` with every
run's validation curves. Runs that differ only in ``seed`` are folded: one row per configuration
with each metric's mean ± std and n, the best configuration marked (report.csv then has mean and
std columns; every run is still in report.md and report_runs.csv). Reads only what runs write: summary.json, metrics.jsonl, .hydra/.
"""

from __future__ import annotations

import csv
import math
import re
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from athanor.metrics.monitor import Monitor, is_finite
from athanor.record.folder import RunDir, read_yaml_or_none

DEFAULT_MONITOR, DEFAULT_MODE = "val/acc", "max"


@dataclass
class RunRow:
    path: Path
    label: str  # the folder, relative to the reported folder
    overrides: dict[str, str]
    status: str
    monitor: str
    mode: str
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl records
    epochs: int | None = None
    wall_time_s: float | None = None
    error: str | None = None

    @property
    def best(self) -> float | None:
        return Monitor(self.monitor, self.mode).best_of([h.get(self.monitor) for h in self.history])

    def final(self, key: str) -> float | None:
        return self.history[-1].get(key) if self.history else None


def find_runs(root: Path) -> list[Path]:
    """Run folders below ``root`` (or ``root`` itself), in path order."""
    return sorted(p.parent for p in root.rglob("summary.json"))


def _label(path: Path, root: Path) -> str:
    rel = str(path.relative_to(root)) if path != root else path.name
    # a sweep job folder `3_optim.lr=0.1,...`: the overrides get their own columns
    return re.sub(r"(^|/)(\d+)_[^/]*=[^/]*$", r"\1\2", rel)


def read_run(path: Path, root: Path) -> RunRow:
    run = RunDir(path)
    summary = run.read_summary()
    config = read_yaml_or_none(path / ".hydra" / "config.yaml") or {}
    checkpoint = config.get("checkpoint", {}) if isinstance(config, dict) else {}
    overrides = read_yaml_or_none(path / ".hydra" / "overrides.yaml")
    overrides = overrides if isinstance(overrides, list) else []
    pairs = dict(o.lstrip("+~").split("=", 1) for o in overrides if isinstance(o, str) and "=" in o)
    history = run.read_metrics()
    return RunRow(
        path=path,
        label=_label(path, root),
        overrides=pairs,
        status=summary.get(
            "status", "damaged" if run.summary.exists() and not summary else "unknown"
        ),
        monitor=summary.get("monitor") or checkpoint.get("monitor", DEFAULT_MONITOR),
        mode=summary.get("mode") or checkpoint.get("mode", DEFAULT_MODE),
        history=history,
        epochs=summary.get("epochs", history[-1].get("epoch") if history else None),
        wall_time_s=summary.get("wall_time_s"),
        error=summary.get("error"),
    )


def varying_keys(rows: list[RunRow]) -> list[str]:
    """Override keys whose value is not the same in every run (sweep axes), in first-seen order."""
    keys = list(dict.fromkeys(k for r in rows for k in r.overrides))
    return [k for k in keys if len({r.overrides.get(k) for r in rows}) > 1]


def sort_rows(rows: list[RunRow], mode: str) -> list[RunRow]:
    """Best first by the monitored metric; runs without a value last, in folder order."""
    sign = -1.0 if mode == "max" else 1.0
    return sorted(rows, key=lambda r: (r.best is None, sign * (r.best or 0.0)))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def build_table(rows: list[RunRow]) -> tuple[list[str], list[list[Any]], str]:
    """Headers, raw cell values (best run first) and the monitored metric."""
    monitor, mode = Counter((r.monitor, r.mode) for r in rows).most_common(1)[0][0]
    keys = varying_keys(rows)
    extra = [k for k in ("val/acc", "val/loss") if k != monitor and any(r.final(k) for r in rows)]
    headers = [
        "run",
        *keys,
        f"best {monitor}",
        f"final {monitor}",
        *(f"final {k}" for k in extra),
        "epochs",
        "wall time (s)",
        "status",
    ]
    body = [
        [
            r.label,
            *(r.overrides.get(k) for k in keys),
            r.best,
            r.final(monitor),
            *(r.final(k) for k in extra),
            r.epochs,
            None if r.wall_time_s is None else round(r.wall_time_s),
            r.status,
        ]
        for r in sort_rows(rows, mode)
    ]
    return headers, body, monitor


SEED_KEY = "seed"


def fold_seeds(rows: list[RunRow]) -> list[list[RunRow]] | None:
    """Runs grouped by their overrides without ``seed`` (one group per configuration), or None
    when no configuration ran with more than one seed (nothing to fold)."""
    groups: dict[tuple, list[RunRow]] = {}
    for r in rows:
        key = tuple(sorted((k, v) for k, v in r.overrides.items() if k != SEED_KEY))
        groups.setdefault(key, []).append(r)
    if all(len({r.overrides.get(SEED_KEY) for r in g}) < 2 for g in groups.values()):
        return None  # no configuration ran with two seeds (repeated runs of one seed stay rows)
    return list(groups.values())


def mean_std(values: list[Any]) -> tuple[float | None, float | None, int]:
    """Mean, sample standard deviation (0 for one value) and count of the finite values."""
    xs = [float(v) for v in values if is_finite(v)]
    if not xs:
        return None, None, 0
    mean = sum(xs) / len(xs)
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else 0.0
    return mean, math.sqrt(var), len(xs)


def folded_tables(
    rows: list[RunRow],
) -> tuple[list[str], list[list[Any]], list[str], list[list[Any]]] | None:
    """Seeds folded: one row per configuration, each metric as mean ± std over its seeds and n,
    the best configuration (by the mean of the best monitored value) marked. Returns the
    Markdown headers and cells, and the CSV headers and raw values; None when nothing to fold."""
    groups = fold_seeds(rows)
    if groups is None:
        return None
    monitor, mode = Counter((r.monitor, r.mode) for r in rows).most_common(1)[0][0]
    keys = [k for k in varying_keys(rows) if k != SEED_KEY]
    extra = [k for k in ("val/acc", "val/loss") if k != monitor and any(r.final(k) for r in rows)]
    metrics = [
        (f"best {monitor}", lambda r: r.best),
        (f"final {monitor}", lambda r: r.final(monitor)),
    ]
    metrics += [(f"final {k}", lambda r, k=k: r.final(k)) for k in extra]
    stats = [[mean_std([get(r) for r in g]) for _, get in metrics] for g in groups]
    sign = -1.0 if mode == "max" else 1.0
    order = sorted(
        range(len(groups)), key=lambda i: (stats[i][0][0] is None, sign * (stats[i][0][0] or 0.0))
    )
    best = order[0] if stats[order[0]][0][0] is not None else None
    md_headers = [*keys, "n", *(name for name, _ in metrics), "status", "best"]
    csv_headers = [
        *keys,
        "n",
        *(f"{name} {part}" for name, _ in metrics for part in ("mean", "std")),
        "status",
        "best",
    ]
    md_body, csv_body = [], []
    for i in order:
        group, first = groups[i], groups[i][0]
        status = ", ".join(f"{n} {s}" for s, n in Counter(r.status for r in group).items())
        mark = "*" if i == best else ""
        cells = [f"{_fmt(m)} ± {_fmt(sd)}" if m is not None else "-" for m, sd, _ in stats[i]]
        n = stats[i][0][2]  # runs with a value (a failed seed does not count)
        md_body.append([*(first.overrides.get(k) for k in keys), n, *cells, status, mark])
        raw = [v for m, sd, _ in stats[i] for v in (m, sd)]
        csv_body.append([*(first.overrides.get(k) for k in keys), n, *raw, status, mark])
    return md_headers, md_body, csv_headers, csv_body


TERMINAL_WIDTH = 100  # the printed table fits this many columns (report.md keeps everything)
CELL_WIDTH = 14  # characters a value or key keeps in the printed table
LABEL_WIDTH = 28  # the run folder's label, its end kept (the time and name differ, not the date)


def _short(text: str, limit: int, *, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    return "…" + text[-(limit - 1) :] if keep_end else text[: limit - 1] + "…"


def _short_key(key: str, keys: list[str]) -> str:
    """An override key by its last part (`optim.lr` -> `lr`) when no other key ends alike."""
    last = key.rsplit(".", 1)[-1]
    unique = sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1
    return _short(last if unique else key, CELL_WIDTH)


def _short_header(header: str, monitor: str) -> str:
    """`best val/acc` -> `best`, `final val/loss` -> `val/loss`: the monitor is named above."""
    for prefix in ("best ", "final "):
        if header == prefix + monitor:
            return prefix.strip()
    return {"wall time (s)": "time (s)"}.get(header, header.removeprefix("final "))


def terminal_table(
    headers: list[str],
    body: list[list[Any]],
    keys: list[str],
    monitor: str,
    width: int = TERMINAL_WIDTH,
) -> str:
    """The table as printed: values shortened; when it is wider than ``width``, the headers too
    (the monitor named once above), then the override columns with the most empty cells left
    out until it fits; a last line says what was left out (`--wide` prints everything,
    report.md and report.csv hold everything)."""
    columns = [[h, *(row[i] for row in body)] for i, h in enumerate(headers)]
    first_key = headers.index(keys[0]) if keys else 0
    shown = list(range(len(headers)))
    texts: dict[int, list[str]] = {}
    for i, (header, *values) in enumerate(columns):
        cells = [_fmt(v) for v in values]
        if i == 0 and header == "run":
            cells = [_short(c, LABEL_WIDTH, keep_end=True) for c in cells]
        else:
            cells = [_short(c, CELL_WIDTH) for c in cells]
        texts[i] = [header, *cells]
    left_out: list[str] = []

    def total() -> int:
        return sum(max(len(c) for c in texts[i]) + 3 for i in shown) + 1

    key_columns = [i for i in range(first_key, first_key + len(keys))] if keys else []
    title = ""
    if total() > width:  # `optim.lr` -> `lr`, `best val/acc` -> `best` (named in a title)
        title = f"best and final: {monitor}\n"
        for i, header in enumerate(headers):
            texts[i][0] = (
                _short_key(header, keys) if i in key_columns else _short_header(header, monitor)
            )
    while total() > width and key_columns:
        emptiest = max(reversed(key_columns), key=lambda i: texts[i][1:].count("-"))
        key_columns.remove(emptiest)
        shown.remove(emptiest)
        left_out.append(headers[emptiest])
    text = title + markdown(
        [texts[i][0] for i in shown],
        [[texts[i][r] for i in shown] for r in range(1, len(body) + 1)],
    )
    if left_out:
        note = (
            f"({len(left_out)} more varying key(s) not shown: {', '.join(left_out[:6])}"
            f"{', …' if len(left_out) > 6 else ''}; `athanor report --wide` shows every column)"
        )
        text += textwrap.fill(note, width, break_long_words=False) + "\n"
    return text


def markdown(headers: list[str], body: list[list[Any]]) -> str:
    cells = [headers, *[[_fmt(v) for v in row] for row in body]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])]) + "\n"


def write_csv(path: Path, headers: list[str], body: list[list[Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(headers)
        writer.writerows([["" if v is None else v for v in row] for row in body])


def plot_curves(path: Path, rows: list[RunRow], monitor: str) -> None:
    """Validation curves of every run (monitored metric and val/loss) against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys([monitor, "val/loss"]))
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4), squeeze=False)
    varying = varying_keys(rows)
    for row in rows:
        name = ", ".join(f"{k}={row.overrides.get(k, '-')}" for k in varying) or row.label
        for ax, key in zip(axes[0], keys, strict=True):
            points = [(h["epoch"], h[key]) for h in row.history if is_finite(h.get(key))]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=f"{name} ({row.status})")
    for ax, key in zip(axes[0], keys, strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(root: Path, *, plot: bool = False, wide: bool = False) -> str | None:
    """Write report.csv / report.md (and report.png) into ``root``; the table to print (fitted
    to a terminal unless ``wide``), or None."""
    paths = find_runs(root)
    if not paths:
        return None
    rows = [read_run(p, root) for p in paths]
    headers, body, monitor = build_table(rows)
    text = markdown(headers, body)
    folded = folded_tables(rows)
    printed = text if wide else terminal_table(headers, body, varying_keys(rows), monitor)
    if folded is None:
        write_csv(root / "report.csv", headers, body)
        (root / "report.md").write_text(f"# Runs under {root}\n\n{text}")
    else:  # one row per configuration, seeds folded; every run still listed below it
        md_headers, md_body, csv_headers, csv_body = folded
        runs = text
        text = markdown(md_headers, md_body)
        keys = [k for k in varying_keys(rows) if k != SEED_KEY]
        printed = text if wide else terminal_table(md_headers, md_body, keys, monitor)
        write_csv(root / "report.csv", csv_headers, csv_body)
        write_csv(root / "report_runs.csv", headers, body)
        (root / "report.md").write_text(
            f"# Runs under {root}, seeds folded (mean ± std, * = best)\n\n{text}\n"
            f"## Every run\n\n{runs}"
        )
    if plot:
        plot_curves(root / "report.png", rows, monitor)
    return printed
