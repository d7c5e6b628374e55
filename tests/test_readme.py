"""Every command block of README.md runs as written, so an example can no longer rot.

The convention (also in the README's "Development" section): every ```bash block is preceded by
one marker line, an HTML comment that GitHub does not render,

    <!-- readme-test: MODE -->

and MODE says how the test runs the block, as one bash script (`set -euo pipefail`) in a fresh
temp folder with this checkout's `train`, `evaluate` and `athanor` on PATH:

- ``run``      every command exactly as written;
- ``dry_run``  ``dry_run=true`` appended to each `train`/`torchrun` command (builds everything,
               checks every config node, times a few steps, writes nothing), the rest as written;
- ``fast``     ``debug=fast`` appended instead (one training and one validation batch);
- ``steps``    ``trainer.max_steps=2`` appended (a real, short run that writes checkpoints);
- ``skip: <reason>``  not run, and the reason is required (needs data files, a GPU, a cluster,
               a plugin that is not installed, minutes of CPU, a server).

`source .venv/bin/activate` lines are what the test's PATH already does. Blocks that are not
commands carry a language (```text, ```yaml), so an unmarked command block fails the first test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import ROOT, free_port

README = ROOT / "README.md"
MARKER = re.compile(r"^<!-- readme-test: (run|dry_run|fast|steps|skip)(?::\s*(.*?))?\s*-->$")
SUFFIX = {"dry_run": " dry_run=true", "fast": " debug=fast", "steps": " trainer.max_steps=2"}
COMMAND_LANGS = ("bash", "sh", "shell", "console")


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    mode: str | None
    reason: str
    commands: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        first = self.commands[0] if self.commands else ""
        return f"L{self.line}:{first[:40]}"


def strip_comment(line: str) -> str:
    """The command without its trailing `# comment` (a # after whitespace, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def parse(text: str) -> list[Block]:
    """The fenced blocks of a markdown text, each with its marker and its commands (a line
    ending in a backslash continues on the next)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        previous = lines[i - 1].strip() if i else ""
        marker = MARKER.match(previous)
        block = Block(
            line=i + 1,
            lang=lines[i][3:].strip(),
            mode=marker[1] if marker else None,
            reason=(marker[2] or "") if marker else "",
        )
        i += 1
        pending = ""
        while i < len(lines) and not lines[i].startswith("```"):
            command = strip_comment(lines[i]).strip()
            if command.endswith("\\"):
                pending += command[:-1].rstrip() + " "
            elif (pending + command).strip():
                block.commands.append((pending + command).strip())
                pending = ""
            i += 1
        blocks.append(block)
        i += 1
    return blocks


def script(block: Block) -> str:
    """The bash script the test runs for a block."""
    lines = ["set -euo pipefail -x"]
    for command in block.commands:
        if command == "source .venv/bin/activate":
            continue  # the test's PATH already starts with the environment's bin/
        if command.split()[0] in ("train", "torchrun"):
            command += SUFFIX.get(block.mode, "")
        lines.append(command)
    return "\n".join(lines) + "\n"


BLOCKS = parse(README.read_text())
COMMAND_BLOCKS = [b for b in BLOCKS if b.lang in COMMAND_LANGS]


def test_every_command_block_says_how_it_is_checked():
    unlabeled = [b.line for b in BLOCKS if not b.lang]
    assert not unlabeled, f"README blocks without a language (```text, ```bash): lines {unlabeled}"
    unmarked = [b.line for b in COMMAND_BLOCKS if b.mode is None]
    assert not unmarked, f"README command blocks without a readme-test marker: lines {unmarked}"
    no_reason = [b.line for b in COMMAND_BLOCKS if b.mode == "skip" and not b.reason]
    assert not no_reason, f"README blocks skipped without a reason: lines {no_reason}"
    assert sum(b.mode != "skip" for b in COMMAND_BLOCKS) >= 20  # most examples do run


def test_the_parser_reads_markers_continuations_and_comments():
    text = (
        "<!-- readme-test: dry_run -->\n```bash\n"
        'train a=1 \\\n      b="{x: 1}"   # joined # and cut\nathanor list  # no suffix\n```\n'
        "```text\ntrain not a command\n```\n"
    )
    runnable, prose = parse(text)
    assert (runnable.mode, runnable.lang, prose.mode, prose.lang) == (
        "dry_run",
        "bash",
        None,
        "text",
    )
    assert runnable.commands == ['train a=1 b="{x: 1}"', "athanor list"]
    assert script(runnable).splitlines()[1:] == [
        'train a=1 b="{x: 1}" dry_run=true',
        "athanor list",
    ]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "CI")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    # a bare `torchrun` listens on 29500, which a block on another pytest worker (or another
    # checkout's suite on this machine) may hold: torchrun reads its --master-port from here
    env["PET_MASTER_PORT"] = str(free_port())
    return env


def params() -> list:
    """One test per command block; a skipped block shows its reason in pytest's report."""
    return [
        pytest.param(
            b, id=b.id, marks=pytest.mark.skip(reason=b.reason) if b.mode == "skip" else ()
        )
        for b in COMMAND_BLOCKS
    ]


@pytest.mark.slow
@pytest.mark.parametrize("block", params())
def test_readme_block_runs_as_written(block, tmp_path):
    proc = subprocess.run(
        ["bash", "-c", script(block)],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, (
        f"README.md line {block.line} ({block.mode}) failed with exit {proc.returncode}:\n"
        f"{proc.stderr[-4000:]}\n{proc.stdout[-2000:]}"
    )


def test_the_room_table_names_every_room_and_base_module():
    """The "Development" section's code layout lists every folder and module of src/athanor."""
    text = README.read_text()
    table = text[text.index("Code layout (`src/athanor/`)") :].split("\n\n", 2)[1]
    package = ROOT / "src" / "athanor"
    rooms = [f"`{p.name}/`" for p in package.iterdir() if (p / "__init__.py").exists()]
    modules = [f"`{p.name}`" for p in package.glob("*.py")]
    missing = [name for name in rooms + modules if name not in table]
    assert not missing, f"README's room table lacks {missing}"


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_the_contents_link_every_section_and_nothing_else():
    """The README is a guide: every `##` section is reachable from the table of contents, and
    every link there lands on a heading (a new section needs its line in the contents)."""
    text, fenced, headings = README.read_text(), False, []
    for line in text.splitlines():
        fenced = fenced != line.startswith("```")
        if not fenced and re.match(r"#{1,2} ", line):
            headings.append(line.lstrip("#").strip())
    contents = text[text.index("## Contents") :].split("\n\n", 2)[1]
    links = set(re.findall(r"\]\(#([^)]+)\)", contents))
    anchors = {anchor(h) for h in headings}
    assert links <= anchors, f"contents links without a heading: {sorted(links - anchors)}"
    sections = {anchor(h) for h in headings if f"## {h}" in text.splitlines()} - {"contents"}
    assert sections <= links, f"sections missing from the contents: {sorted(sections - links)}"
