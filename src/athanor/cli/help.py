"""athanor's own `--help` pages for `train`, `evaluate` and `athanor`: what the command does,
copy-pasteable examples, and the config groups with their options, read from conf/ (so the page
lists what is really there). Hydra's generic page stays available as `train --hydra-help`."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

from athanor.cli.compose import CONF_DIR

HELP_FLAGS = ("--help", "-h")

# `  - model: mlp   # network; ...` in conf/train.yaml's defaults list
# (`- optional experiment: default`: a group whose default file may be missing;
# `- override hydra/launcher: pool`: a group of Hydra's own, whose default athanor sets)
_DEFAULT_LINE = re.compile(
    r"^\s+-\s+(?:optional\s+|override\s+)?([\w/]+):\s*(\S+)\s*(?:#\s*(.*))?$"
)
# `split: val   # val | test ...` in conf/evaluate.yaml
_KEY_LINE = re.compile(r"^(\w+):\s*(.*?)\s*#\s*(.*)$")

TRAIN_EXAMPLES = """\
  train                                          # MLP on the embedded digits data, ~10 s on a CPU
  train model=simple_cnn optim=sgd optim.lr=0.05 trainer.epochs=5
  train experiment=digits_quick                  # a preset from conf/experiment/
  train debug=fast                               # one training + one validation batch
  train model=resnet18 trainer.epochs=90 dry_run=true   # build, time a few steps, estimate
  train resume=outputs/<date>/<time>_mlp_digits  # continue a run in its folder
  train -m optim.lr=0.1,0.05 optim=sgd,adamw     # a sweep: one run folder per combination
  train --cfg job                                # print the composed config and exit
  train optim=sgd --cfg job --provenance         # ... with the file each value came from"""

EVALUATE_EXAMPLES = """\
  evaluate ckpt=outputs/<date>/<time>_mlp_digits            # best.pt (else last.pt), val split
  evaluate ckpt=outputs/<date>/<time>_mlp_digits data.batch_size=512 tta_flip=true
  evaluate ckpt=<run>/checkpoints/last.pt split=test        # data sets with a test split
  evaluate ckpt=<run> weights=ema                           # runs trained with trainer.ema.decay"""

ATHANOR_EXAMPLES = """\
  athanor list                       # every config group and its registered names
  athanor list model                 # one group (models include the torchvision archs)
  athanor help trainer               # a group's keys (default, type, range) and names
  athanor export outputs/<date>/<time>_mlp_digits model.pt
  athanor report outputs --plot      # a table of every run, best first, and their curves
  athanor reproduce <run> [--steps N]   # the run again into <run>.reproduce-1, compared
  athanor diff <run_a> <run_b> [--plot] # config, environment and metrics side by side"""


def config_groups(conf_dir: Path = CONF_DIR) -> list[tuple[str, str, str, list[str]]]:
    """(group, default choice, what it is, options) for each group in conf/train.yaml's
    defaults list, the options being the files of ``conf/<group>/``."""
    groups = []
    for line in (conf_dir / "train.yaml").read_text().splitlines():
        match = _DEFAULT_LINE.match(line)
        if not match or not (conf_dir / match[1]).is_dir():
            continue
        options = sorted(p.stem for p in (conf_dir / match[1]).glob("*.yaml"))
        groups.append((match[1], match[2], (match[3] or "").strip(), options))
    return groups


def groups_text(conf_dir: Path = CONF_DIR) -> str:
    rows, indent = [], " " * 18
    for group, default, about, options in config_groups(conf_dir):
        rows.append(f"  {group:<15} {about} (default: {default})")
        if options != [default]:  # a group with one file (trainer, logger, ...) has no choice
            text = ", ".join(options)
            rows.append(textwrap.fill(text, 100, initial_indent=indent, subsequent_indent=indent))
    return "\n".join(rows)


def train_help() -> str:
    return f"""\
train [group=option ...] [key=value ...] [-m]

Compose conf/train.yaml with the overrides, build every component by name, train, evaluate and
write the run into one folder under outputs/ (train.log, TensorBoard, checkpoints, metrics.jsonl,
summary.json). Exit codes: 0 done, 1 failed, 2 config error, 130 interrupted (resume me).

Examples:
{TRAIN_EXAMPLES}

Config groups (pick one file with group=option, change a key with group.key=value):
{groups_text()}

Top-level keys: seed, device (auto|cpu|cuda), name, resume (a run folder, a .pt or auto), dry_run.
More: `athanor list [group]` (registered names), `athanor help <group>` (every key with its
default and range), `train --cfg job` (the composed config),
`train --hydra-help` (Hydra's own options), `athanor help guide` (the user's guide)."""


def evaluate_keys(conf_dir: Path = CONF_DIR) -> str:
    """conf/evaluate.yaml's keys with their comments (`data` takes any data.* key)."""
    rows = []
    for line in (conf_dir / "evaluate.yaml").read_text().splitlines():
        match = _KEY_LINE.match(line)
        if match:
            key, default = match[1], {"???": " (required)", "{}": ""}.get(match[2])
            default = f" (default: {match[2]})" if default is None else default
            rows.append(f"  {'data.*' if key == 'data' else key:<10} {match[3]}{default}")
    return "\n".join(rows)


def evaluate_help() -> str:
    return f"""\
evaluate ckpt=<run folder or .pt> [key=value ...]

Rebuild the model from the checkpoint's own config and evaluate it: prints loss, top-1, top-5 and
per-class accuracy and writes eval_<split>_<time>.json next to the checkpoint (no run folder).

Keys (conf/evaluate.yaml):
{evaluate_keys()}

Examples:
{EVALUATE_EXAMPLES}"""


def athanor_epilog() -> str:
    return f"""\
examples:
{ATHANOR_EXAMPLES}

config groups of `train` (see `train --help`):
{groups_text()}"""


def print_help_if_asked(page, argv: list[str] | None = None) -> None:
    """Print ``page()`` and exit 0 when the command line asks for help (-h / --help)."""
    argv = sys.argv[1:] if argv is None else argv
    if any(arg in HELP_FLAGS for arg in argv):
        print(page())
        sys.exit(0)


# ---- the reference: every key of every group, every registered name, generated ---------------

REFERENCE = Path(__file__).resolve().parent.parent / "REFERENCE.md"
# the hand-written guide, shipped beside the reference: `athanor help guide` prints it
GUIDE = Path(__file__).resolve().parent.parent / "GUIDE.md"
WRITE_COMMAND = "athanor help --write-reference"


def _builder_arguments(registry, entry) -> str:
    """A builder's configurable arguments with their defaults: `lr=0.001, momentum=0.9`."""
    import inspect

    params = inspect.signature(entry.builder).parameters.values()
    args = []
    for p in params:
        if p.name in registry.runtime or p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        args.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return ", ".join(f"`{a}`" for a in args) or "(none)"


def group_reference(group: str) -> str:
    """One group's Markdown section: its keys (default, type and range, meaning) and, for a
    component group, every registered name of athanor's with its builder's arguments."""
    from athanor.config.groups import COMPONENT_GROUPS
    from athanor.config.reference import SETTINGS_GROUPS, keys_table
    from athanor.engine.build import REGISTRIES

    if group in SETTINGS_GROUPS:
        source = f"conf/{group}/default.yaml, generated from config/settings.py"
        return f"## {group}\n\nKeys ({source}):\n\n{keys_table(SETTINGS_GROUPS[group], group)}\n"
    registry = REGISTRIES[group]
    rows = ["| name | arguments (`group.<argument>=value`) | what it is |", "|---|---|---|"]
    for entry in registry.entries():
        if entry.origin.startswith("athanor."):  # a user's own are listed by `athanor list`
            described = entry.description.replace("|", "\\|")
            rows.append(f"| `{entry.name}` | {_builder_arguments(registry, entry)} | {described} |")
    keys = keys_table(COMPONENT_GROUPS[group], group)
    runtime = ", ".join(f"`{name}`" for name in sorted(registry.runtime)) or "none"
    return (
        f"## {group}\n\nGroup-wide keys (any `{group}=<name>`; config/groups.py):\n\n{keys}\n\n"
        f"Runtime arguments athanor passes to a builder that names them: {runtime}.\n\n"
        f"Registered names (`{group}=<name>`; each builder's own arguments):\n\n"
        + "\n".join(rows)
        + "\n"
    )


def reference_groups() -> list[str]:
    from athanor.config.reference import SETTINGS_GROUPS
    from athanor.engine.build import REGISTRIES

    return [*REGISTRIES, *SETTINGS_GROUPS]


def reference_text() -> str:
    """REFERENCE.md: the top-level keys, every group, summary.json's fields."""
    from athanor.config.reference import keys_table
    from athanor.config.settings import RunSettings
    from athanor.record.summary import fields_table

    groups = reference_groups()
    toc = "\n".join(f"- [{g}](#{g})" for g in groups) + "\n- [summary.json](#summaryjson)"
    top = keys_table(RunSettings, "").replace("`.", "`").splitlines()
    top = [row for row in top if "`trainer." not in row and not _nested(row, groups)]
    sections = "\n".join(group_reference(g) for g in groups)
    return f"""\
# athanor reference

Generated from the typed settings, the option classes and the registries: do not edit, run
`{WRITE_COMMAND}`. `athanor help <group>` prints one section; README.md and GUIDE.md are the guide.

{toc}

## Top-level keys

{chr(10).join(top)}

{sections}
## summary.json

Every run folder's summary.json (record/summary.py):

{fields_table()}
"""


def _nested(row: str, groups: list[str]) -> bool:
    return any(row.startswith(f"| `{g}.") for g in groups)


def generated_files() -> dict[Path, str]:
    """{path: the text it must hold}: REFERENCE.md and the settings groups' default.yaml."""
    from athanor.config.reference import SETTINGS_GROUPS, settings_yaml

    header = "# generated from config/settings.py: edit the class, then `{}`\n"
    files = {REFERENCE: reference_text()}
    for group, cls in SETTINGS_GROUPS.items():
        text = header.format(WRITE_COMMAND) + settings_yaml(cls) + "\n"
        files[CONF_DIR / group / "default.yaml"] = text
    return files


def stale_files() -> list[Path]:
    """The generated files whose text is not what the schema and registries give today."""
    return [p for p, text in generated_files().items() if not p.is_file() or p.read_text() != text]


def cmd_help(group: str | None, *, write: bool) -> int:
    """`athanor help [group]`: one group's reference, the list of groups, or (`athanor help
    guide`) the guide; `--write-reference` rewrites every generated file."""
    if write:
        for path, text in generated_files().items():
            if not path.is_file() or path.read_text() != text:
                path.write_text(text)
                print(f"wrote {path}")
        return 0
    groups = reference_groups()
    if group is None:
        print(f"athanor help <group>: one of {', '.join(groups)}. Everything: {REFERENCE}")
        print(f"athanor help guide: the how-tos behind the README ({GUIDE.name}).")
        return 0
    if group == "guide":
        print(GUIDE.read_text())
        return 0
    if group not in groups:
        from athanor.registry import closest

        print(f"Unknown group {group!r}.{closest(group, groups)} Groups: {', '.join(groups)}.")
        return 2
    print(group_reference(group).replace("\\|", "|"))  # Markdown's escaped bars, for a terminal
    return 0
