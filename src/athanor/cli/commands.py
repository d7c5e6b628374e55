"""The `athanor` utility command: `athanor list [group]`, `athanor export <ckpt> <out.pt>`,
`athanor report <folder> [--plot]` (more subcommands join here)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def registries() -> dict:
    from athanor.engine.build import REGISTRIES

    return REGISTRIES


def presets() -> list[tuple[str, str]]:
    """(name, first line of its header comment) for each conf/experiment/*.yaml bundle."""
    from athanor.cli.compose import CONF_DIR

    out = []
    for path in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        comments = [
            line.lstrip("# ").strip()
            for line in path.read_text().splitlines()
            if line.startswith("#") and "@package" not in line
        ]
        out.append((path.stem, comments[0] if comments else ""))
    return out


def _wrapped(words: list[str], indent: str = "    ", width: int = 100) -> list[str]:
    lines, line = [], indent
    for word in words:
        if len(line) + len(word) > width and line.strip():
            lines.append(line.rstrip())
            line = indent
        line += word + " "
    return lines + [line.rstrip()]


def _rows(group: str, entries: list[tuple[str, str]]) -> list[str]:
    rows = [f"{group}:"]
    for name, description in entries:
        text = description.rstrip(".")
        rows.append(f"  {name:<20} {text if len(text) <= 78 else text[:77] + '…'}")
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    """Every config group's registered names with one line each; one group with a name."""
    regs = registries()
    groups = {**{g: [(e.name, e.description) for e in r.entries()] for g, r in regs.items()}}
    groups["experiment"] = presets()
    if args.group and args.group not in groups:
        from athanor.registry import closest

        print(
            f"Unknown group {args.group!r}.{closest(args.group, groups)} "
            f"Groups: {', '.join(groups)}.",
            file=sys.stderr,
        )
        return 2
    for group in [args.group] if args.group else list(groups):
        print("\n".join(_rows(group, groups[group])))
        if group == "model":
            from athanor.models.vision import classification_archs

            archs = classification_archs()
            print(f"  + {len(archs)} torchvision archs: model=torchvision model.arch=<name>")
            if args.group:
                print("\n".join(_wrapped(archs)))
            else:
                print("    (`athanor list model` lists them)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Weights only (a plain state_dict, no `module.` prefix) for downstream use."""
    from pathlib import Path

    from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

    from athanor.engine.evaluate_checkpoint import load_for_evaluation, model_weights
    from athanor.errors import ConfigError
    from athanor.record.checkpoints import save_atomic

    try:
        state, path = load_for_evaluation(args.ckpt)
        weights = dict(model_weights(state, "ema" if args.ema else "model", path))
    except ConfigError as err:
        print(f"Config error: {err}", file=sys.stderr)
        return 2
    consume_prefix_in_state_dict_if_present(weights, "module.")
    out = Path(args.out)
    save_atomic(weights, out)
    print(f"{out}: {len(weights)} tensors from {path} (step {state['step']})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from athanor.sweep.report import report

    root = Path(args.folder)
    if not root.is_dir():
        print(f"No folder {str(root)!r}: give a sweep or outputs folder.", file=sys.stderr)
        return 2
    table = report(root, plot=args.plot)
    if table is None:
        print(f"No run folders (summary.json or .hydra/) under {root}.", file=sys.stderr)
        return 2
    print(table, end="")
    written = ", ".join(n for n in ("report.csv", "report.md", "report.png") if (root / n).exists())
    print(f"wrote {written} in {root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from athanor.cli.help import athanor_epilog

    parser = argparse.ArgumentParser(
        prog="athanor",
        description="athanor utilities: list the registered names, export weights, tabulate runs",
        epilog=athanor_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="registered names per config group")
    p.add_argument(
        "group", nargs="?", help="model, data, optim, scheduler, augment, loss or experiment"
    )
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("export", help="write a checkpoint's model weights only (a state_dict)")
    p.add_argument("ckpt", help="a .pt checkpoint or a run folder (best.pt, else last.pt)")
    p.add_argument("out", help="the state_dict file to write, e.g. model.pt")
    p.add_argument("--ema", action="store_true", help="export the EMA weights instead")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("report", help="a table of the runs in a sweep or outputs folder")
    p.add_argument("folder", help="e.g. outputs/multirun/2026-11-25/14-03-12_mlp_digits")
    p.add_argument("--plot", action="store_true", help="also write report.png (val curves)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))
