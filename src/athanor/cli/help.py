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
  train --cfg job                                # print the composed config and exit"""

EVALUATE_EXAMPLES = """\
  evaluate ckpt=outputs/<date>/<time>_mlp_digits            # best.pt (else last.pt), val split
  evaluate ckpt=outputs/<date>/<time>_mlp_digits data.batch_size=512 tta_flip=true
  evaluate ckpt=<run>/checkpoints/last.pt split=test        # data sets with a test split
  evaluate ckpt=<run> weights=ema                           # runs trained with trainer.ema.decay"""

ATHANOR_EXAMPLES = """\
  athanor list                       # every config group and its registered names
  athanor list model                 # one group (models include the torchvision archs)
  athanor export outputs/<date>/<time>_mlp_digits model.pt
  athanor report outputs --plot      # a table of every run, best first, and their curves"""


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
More: `athanor list [group]` (registered names), `train --cfg job` (the composed config),
`train --hydra-help` (Hydra's own options), README.md (the user's guide)."""


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
