"""`athanor diff <run_a> <run_b>`: what differs between two runs and what it did: the flattened
config keys that differ, the environment differences, the best and final metrics side by side
(the monitored metric first), as a table that fits a terminal or as JSON; and, asked for, both
runs' curves overlaid in one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from athanor.compare.runs import Run, environment_differences, numeric
from athanor.config.flatten import flatten

WIDTH = 34  # a value's column: two of them and the key fit 100 columns


def config_differences(a: Run, b: Run) -> dict[str, tuple[Any, Any]]:
    fa, fb = flatten(a.config), flatten(b.config)
    missing = "<absent>"
    return {
        k: (fa.get(k, missing), fb.get(k, missing))
        for k in sorted(fa.keys() | fb.keys())
        if fa.get(k, missing) != fb.get(k, missing)
    }


def metric_names(a: Run, b: Run) -> list[str]:
    """The numeric metrics of either run's best/final, the monitored one first."""
    names = {
        k
        for run in (a, b)
        for part in ("best", "final")
        for k, v in (run.summary.get(part) or {}).items()
        if (numeric(v) or v is None) and k not in ("epoch", "step", "time")
    }
    first = [m for m in (a.monitor, b.monitor) if m in names]
    return list(dict.fromkeys([*first, *sorted(names)]))


def diff(a: Run, b: Run) -> dict[str, Any]:
    """The differences as plain data (what --json prints)."""
    sa, sb = a.summary, b.summary
    return {
        "runs": [str(a.path), str(b.path)],
        "config": {k: list(v) for k, v in config_differences(a, b).items()},
        "environment": {w: [x, y] for w, x, y in environment_differences(sa, sb)},
        "monitor": a.monitor,
        "metrics": {
            m: {
                "best": [(sa.get("best") or {}).get(m), (sb.get("best") or {}).get(m)],
                "final": [(sa.get("final") or {}).get(m), (sb.get("final") or {}).get(m)],
            }
            for m in metric_names(a, b)
        },
        "status": [sa.get("status"), sb.get("status")],
        "steps": [sa.get("steps"), sb.get("steps")],
    }


def _cell(value: Any, width: int = WIDTH) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def table(result: dict[str, Any]) -> str:
    """The differences as text of at most ~100 columns."""
    a, b = (Path(p).name for p in result["runs"])
    key_width = 100 - 2 * (WIDTH + 2)
    head = f"{'':<{key_width}}  {_cell('A: ' + a):<{WIDTH}}  {_cell('B: ' + b):<{WIDTH}}"
    lines = [head.rstrip()]

    def section(title: str, rows: dict[str, Any]) -> None:
        lines.append(f"{title}:" if rows else f"{title}: the same")
        for key, (x, y) in rows.items():
            lines.append(
                f"  {_cell(key, key_width - 2):<{key_width - 2}}  {_cell(x):<{WIDTH}}  {_cell(y)}"
            )

    section("config", result["config"])
    section("environment", result["environment"])
    section("status, steps", {"status": result["status"], "steps": result["steps"]})
    metrics = {}
    for name, values in result["metrics"].items():
        mark = " (monitored)" if name == result["monitor"] else ""
        metrics[f"best {name}{mark}"] = values["best"]
        metrics[f"final {name}"] = values["final"]
    section("metrics", metrics)
    return "\n".join(lines) + "\n"


def plot(a: Run, b: Run, path: Path) -> Path:
    """Both runs' curves of the monitored metric, val/loss and train/loss, overlaid in one PNG."""
    from athanor.observe.plots import overlay_figure, save

    curves = {f"A: {a.path.name}": a.curves(), f"B: {b.path.name}": b.curves()}
    present = {m for c in curves.values() for m in c}
    metrics = [m for m in dict.fromkeys([a.monitor, "val/loss", "train/loss"]) if m in present]
    return save(overlay_figure(curves, metrics), path)
