"""The `athanor` utility command: `athanor list [group]`, `athanor help [group]`,
`athanor export <ckpt> <out> [--format]`, `athanor report <folder> [--plot]`, `athanor init NAME`,
`athanor reproduce <run>`, `athanor diff <run_a> <run_b>` (more subcommands join here)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from athanor.process import collector


def registries() -> dict:
    from athanor.engine.build import REGISTRIES

    return REGISTRIES


def presets() -> list[tuple[str, str]]:
    """(name, first line of its header comment [+ its folder]) for each experiment/*.yaml
    bundle of every searched config folder (the project's first)."""
    from athanor.cli.project import origins, search_dirs

    out = []
    for name, folder in sorted(origins("experiment", search_dirs()).items()):
        path = folder / "experiment" / f"{name}.yaml"
        comments = [
            line.lstrip("# ").strip()
            for line in path.read_text().splitlines()
            if line.startswith("#") and "@package" not in line
        ]
        out.append((name, comments[0] if comments else ""))
    return out


def load_project_code() -> str | None:
    """Plugins and the default config's `imports`, so their entries are listed; a message when
    that fails (the message is printed, the listing goes on with what is loaded)."""
    from athanor import plugins
    from athanor.cli.api import compose
    from athanor.errors import ConfigError, UserCodeError

    try:
        plugins.load_user_code(compose([]).get("imports"))
    except (ConfigError, UserCodeError) as err:
        return f"(your code was not fully loaded: {err})"
    return None


def _describe(entry) -> tuple[str, str]:
    """(description, where it comes from: the module or plugin unless it is athanor's own)."""
    return entry.description, "" if entry.origin.startswith("athanor.") else entry.origin


def project_options(group: str) -> list[str]:
    """Lines naming the options (YAML files) of ``group`` that come from outside athanor."""
    from athanor.cli.project import label, origins, search_dirs

    by_folder: dict = {}
    for name, folder in origins(group, search_dirs()).items():
        if label(folder) != "athanor":
            by_folder.setdefault(folder, []).append(name)
    return [f"  options from {f}: {', '.join(n)}" for f, n in by_folder.items()]


def _wrapped(words: list[str], indent: str = "    ", width: int = 100) -> list[str]:
    lines, line = [], indent
    for word in words:
        if len(line) + len(word) > width and line.strip():
            lines.append(line.rstrip())
            line = indent
        line += word + " "
    return lines + [line.rstrip()]


def _rows(group: str, entries: list[tuple[str, ...]]) -> list[str]:
    """One line per entry: name, description cut to the line, then [where] when not athanor's."""
    rows = [f"{group}:"]
    for name, description, *where in entries:
        mark = f" [{where[0]}]" if where and where[0] else ""
        text, room = description.rstrip("."), 78 - len(mark)
        rows.append(f"  {name:<20} {text if len(text) <= room else text[: room - 1] + '…'}{mark}")
    return rows


def _zoo_lines(*, full: bool) -> list[str]:
    """The archs reachable through `model=torchvision` and (when installed) `model=timm`."""
    from athanor.models.timm_models import timm_archs
    from athanor.models.vision import classification_archs

    lines = []
    for zoo, archs in (("torchvision", classification_archs()), ("timm", timm_archs())):
        if not archs:
            lines.append("  + timm archs: pip install 'athanor[timm]' for model=timm")
            continue
        lines.append(f"  + {len(archs)} {zoo} archs: model={zoo} model.arch=<name>")
        lines += _wrapped(archs) if full else ["    (`athanor list model` lists them)"]
    return lines


def cmd_list(args: argparse.Namespace) -> int:
    """Every config group's registered names with one line each; one group with a name."""
    problem = load_project_code()
    regs = registries()
    groups = {g: [(e.name, *_describe(e)) for e in r.entries()] for g, r in regs.items()}
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
        print("\n".join(_rows(group, groups[group]) + project_options(group)))
        if group == "model":
            print("\n".join(_zoo_lines(full=bool(args.group))))
    if problem:
        print(problem, file=sys.stderr)
    return 0


def cmd_help(args: argparse.Namespace) -> int:
    from athanor.cli.help import cmd_help as help_page

    return help_page(args.group, write=args.write_reference)


def cmd_export(args: argparse.Namespace) -> int:
    """The model as a state_dict, safetensors, ONNX or torch.export file, checked against the
    checkpoint's own outputs on a validation batch."""
    from athanor.errors import ConfigError
    from athanor.offline.export import export

    collector.start_up_done()  # imported: the export's tracing collects as usual
    try:
        result = export(args.ckpt, Path(args.out), args.format, ema=args.ema)
    except ConfigError as err:
        print(f"Config error: {err}", file=sys.stderr)
        return 2
    print(result.describe())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from athanor.sweep.report import report

    root = Path(args.folder)
    if not root.is_dir():
        print(f"No folder {str(root)!r}: give a sweep or outputs folder.", file=sys.stderr)
        return 2
    table = report(root, plot=args.plot, wide=args.wide)
    if table is None:
        print(f"No run folders (summary.json or .hydra/) under {root}.", file=sys.stderr)
        return 2
    print(table, end="")
    written = ", ".join(n for n in ("report.csv", "report.md", "report.png") if (root / n).exists())
    print(f"wrote {written} in {root}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from athanor.cli.init import init_project
    from athanor.errors import ConfigError

    try:
        written = init_project(args.name)
    except ConfigError as err:
        print(f"Config error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files in {args.name}/. Next:\n  cd {args.name} && train")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """The run again into <run>.reproduce-N, then compared with it; 1 beyond the tolerance."""
    import json

    from athanor.cli import reproduce as cli_reproduce
    from athanor.compare import reproduce
    from athanor.compare.runs import read_run
    from athanor.errors import ConfigError

    try:
        original = read_run(Path(args.run).resolve())
        if args.steps is not None and args.steps < 1:
            raise ConfigError(f"--steps {args.steps}: give a number of optimizer steps >= 1.")
        cwd = cli_reproduce.run_folder_of(original)
        with cli_reproduce.working_folder(cwd):
            warnings = reproduce.environment_warnings(original)
            target = cli_reproduce.next_folder(original.path)
            command = cli_reproduce.rerun_command(original, target, args.steps)
    except ConfigError as err:
        print(f"Config error: {err}", file=sys.stderr)
        return 2
    for line in warnings:
        print(f"warning: {line}", flush=True)
    threads = cli_reproduce.rerun_threads(original)
    pinned = " ".join(f"{k}={v}" for k, v in threads.items())
    print("reproduce:", *filter(None, (pinned, " ".join(command[1:]))), flush=True)
    code = cli_reproduce.rerun(command, cwd, threads)
    if code != 0 or not (target / "summary.json").is_file():
        print(f"the re-run failed (exit {code}); its folder: {target}", file=sys.stderr)
        return code or 1
    again = read_run(target)
    for line in reproduce.rerun_warnings(original, again):
        print(f"warning: {line}")
    atol = reproduce.default_atol(original) if args.atol is None else args.atol
    diffs = reproduce.compare_runs(original, again, args.steps)
    ok, text = reproduce.verdict(diffs, atol)
    print(f"{original.path.name} vs {target.name}:\n{text}")
    comparison = {"atol": atol, "within": ok, "metrics": reproduce.as_data(diffs)}
    (target / "reproduce.json").write_text(json.dumps(comparison, indent=2) + "\n")
    return 0 if ok else 1


def cmd_diff(args: argparse.Namespace) -> int:
    """Two runs side by side: config keys, environment, best and final metrics."""
    import json

    from athanor.compare import diff
    from athanor.compare.runs import read_run
    from athanor.errors import ConfigError

    try:
        a, b = read_run(args.run_a), read_run(args.run_b)
    except ConfigError as err:
        print(f"Config error: {err}", file=sys.stderr)
        return 2
    result = diff.diff(a, b)
    print(json.dumps(result, indent=2, default=str) if args.json else diff.table(result), end="")
    if args.plot:
        written = diff.plot(a, b, Path(args.plot))
        if not args.json:  # the JSON stays the whole of stdout
            print(f"wrote {written}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from athanor.cli.help import athanor_epilog

    parser = argparse.ArgumentParser(
        prog="athanor",
        description=(
            "athanor utilities: list the registered names, the reference of every key, export "
            "weights, tabulate runs"
        ),
        epilog=athanor_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="registered names per config group")
    p.add_argument(
        "group", nargs="?", help="model, data, optim, scheduler, augment, loss or experiment"
    )
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("help", help="every key of a group (default, type, range) and its names")
    p.add_argument(
        "group", nargs="?", help="model, data, ..., trainer, checkpoint, logger, ... or guide"
    )
    p.add_argument(
        "--write-reference",
        action="store_true",
        help="rewrite REFERENCE.md and the files generated from the settings (in a checkout)",
    )
    p.set_defaults(func=cmd_help)
    p = sub.add_parser("export", help="write a checkpoint's model (state_dict, ONNX, ...), checked")
    p.add_argument("ckpt", help="a .pt checkpoint or a run folder (best.pt, else last.pt)")
    p.add_argument("out", help="the file to write, e.g. model.pt, model.onnx, model.pt2")
    p.add_argument(
        "--format",
        choices=("state_dict", "safetensors", "onnx", "torch_export"),
        help="default: from the suffix (.safetensors, .onnx, .pt2), else state_dict",
    )
    p.add_argument("--ema", action="store_true", help="export the EMA weights instead")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("report", help="a table of the runs in a sweep or outputs folder")
    p.add_argument("folder", help="e.g. outputs/multirun/2026-11-25/14-03-12_mlp_digits")
    p.add_argument("--plot", action="store_true", help="also write report.png (val curves)")
    p.add_argument(
        "--wide", action="store_true", help="print every column, values whole (as in report.md)"
    )
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("init", help="write a new project (model, data set, conf/, smoke test)")
    p.add_argument("name", help="the new folder, e.g. my-project (package my_project)")
    p.set_defaults(func=cmd_init)
    p = sub.add_parser("reproduce", help="re-run a run into <run>.reproduce-N and compare them")
    p.add_argument("run", help="a run folder, e.g. outputs/2026-12-06/10-00-00_mlp_digits")
    p.add_argument("--steps", type=int, help="re-run and compare the first N optimizer steps")
    p.add_argument(
        "--atol",
        type=float,
        help="largest metric difference accepted (default: 0 for a CPU or deterministic run, "
        "1e-2 for a GPU run without trainer.deterministic)",
    )
    p.set_defaults(func=cmd_reproduce)
    p = sub.add_parser("diff", help="two runs side by side: config, environment, metrics")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--json", action="store_true", help="the differences as JSON, for scripts")
    p.add_argument(
        "--plot", nargs="?", const="diff.png", help="overlay both runs' curves in a PNG (diff.png)"
    )
    p.set_defaults(func=cmd_diff)
    return parser


def main(argv: list[str] | None = None) -> None:
    # as `train` does (process/collector.py); list, report and init end soon after their
    # imports, export resumes the collector before its tracing
    collector.pause_for_start_up()
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except OSError as err:  # a damaged, missing or read-only place the user named
        from athanor.cli.outcome import path_message

        said = path_message(err)
        if said is None:
            raise
        print(f"Error: {said}", file=sys.stderr)
        code = 2
    sys.exit(code)
