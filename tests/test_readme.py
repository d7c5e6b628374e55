"""Every command block of README.md and of the guide (src/athanor/GUIDE.md) runs as written, so
an example can no longer rot, and each document's contents and links land on its headings.

The convention (also in the guide's "The documents' examples are tested"): every ```bash block is
preceded by one marker line, an HTML comment that GitHub does not render,

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

from conftest import ROOT, cli, free_port

README = ROOT / "README.md"
GUIDE = ROOT / "src" / "athanor" / "GUIDE.md"
DOCS = (README, GUIDE)
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
    doc: str = ""  # the file's name: README.md or GUIDE.md

    @property
    def id(self) -> str:
        first = self.commands[0] if self.commands else ""
        return f"{self.doc}:L{self.line}:{first[:40]}"


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


def parse(text: str, doc: str = "") -> list[Block]:
    """The fenced blocks of a markdown text, each with its marker and its commands (a line
    ending in a backslash continues on the next); `doc` names the file in each block's id."""
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
            doc=doc,
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


BLOCKS = {doc.name: parse(doc.read_text(), doc.name) for doc in DOCS}
COMMAND_BLOCKS = [b for blocks in BLOCKS.values() for b in blocks if b.lang in COMMAND_LANGS]


@pytest.mark.parametrize("doc", [doc.name for doc in DOCS])
def test_every_command_block_says_how_it_is_checked(doc):
    blocks = BLOCKS[doc]
    commands = [b for b in blocks if b.lang in COMMAND_LANGS]
    unlabeled = [b.line for b in blocks if not b.lang]
    assert not unlabeled, f"{doc} blocks without a language (```text, ```bash): lines {unlabeled}"
    unmarked = [b.line for b in commands if b.mode is None]
    assert not unmarked, f"{doc} command blocks without a readme-test marker: lines {unmarked}"
    no_reason = [b.line for b in commands if b.mode == "skip" and not b.reason]
    assert not no_reason, f"{doc} blocks skipped without a reason: lines {no_reason}"
    assert commands, f"{doc} has no command block"


def test_most_examples_run():
    assert sum(b.mode != "skip" for b in COMMAND_BLOCKS) >= 20


def test_the_parser_reads_markers_continuations_and_comments():
    text = (
        "<!-- readme-test: dry_run -->\n```bash\n"
        'train a=1 \\\n      b="{x: 1}"   # joined # and cut\nathanor list  # no suffix\n```\n'
        "```text\ntrain not a command\n```\n"
    )
    runnable, prose = parse(text, "X.md")
    assert runnable.id == 'X.md:L2:train a=1 b="{x: 1}"'
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
        f"{block.doc} line {block.line} ({block.mode}) failed with exit {proc.returncode}:\n"
        f"{proc.stderr[-4000:]}\n{proc.stdout[-2000:]}"
    )


def test_the_room_table_names_every_room_and_base_module():
    """The guide's "Code layout" table lists every folder and module of src/athanor."""
    text = GUIDE.read_text()
    table = text[text.index("| room | what it owns |") :].split("\n\n", 1)[0]
    package = ROOT / "src" / "athanor"
    rooms = [f"`{p.name}/`" for p in package.iterdir() if (p / "__init__.py").exists()]
    modules = [f"`{p.name}`" for p in package.glob("*.py")]
    missing = [name for name in rooms + modules if name not in table]
    assert not missing, f"README's room table lacks {missing}"


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def headings(text: str) -> list[str]:
    """The `#` and `##` headings of a markdown text, outside fenced blocks."""
    fenced, found = False, []
    for line in text.splitlines():
        fenced = fenced != line.startswith("```")
        if not fenced and re.match(r"#{1,2} ", line):
            found.append(line.lstrip("#").strip())
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_the_contents_link_every_section_and_nothing_else(doc):
    """Each document is a guide: every `##` section is reachable from its table of contents, and
    every link there lands on a heading (a new section needs its line in the contents)."""
    text = doc.read_text()
    contents = text[text.index("## Contents") :].split("\n\n", 2)[1]
    links = set(re.findall(r"\]\(#([^)]+)\)", contents))
    anchors = {anchor(h) for h in headings(text)}
    assert links <= anchors, (
        f"{doc.name}: contents links without a heading: {sorted(links - anchors)}"
    )
    sections = {anchor(h) for h in headings(text) if f"## {h}" in text.splitlines()} - {"contents"}
    assert sections <= links, (
        f"{doc.name}: sections missing from the contents: {sorted(sections - links)}"
    )


@pytest.mark.parametrize("source", DOCS, ids=lambda doc: doc.name)
def test_links_between_the_documents_land_on_headings(source):
    """The README's `[more](src/athanor/GUIDE.md#...)` links and the guide's links back to the
    README name headings that exist, so moving or renaming a section cannot leave one dangling."""
    text = source.read_text()
    broken = []
    for target in DOCS:
        if target == source:
            continue
        path = os.path.relpath(target, source.parent)
        anchors = {anchor(h) for h in headings(target.read_text())}
        for link in re.findall(rf"\]\({re.escape(path)}(?:#([^)]*))?\)", text):
            if link and link not in anchors:
                broken.append(f"{path}#{link}")
    assert not broken, f"{source.name} links to headings that do not exist: {broken}"
    assert f"]({os.path.relpath(DOCS[1 - DOCS.index(source)], source.parent)}" in text


def test_athanor_help_guide_prints_the_guide(tmp_path):
    """The guide ships in the package (pyproject's package-data) and `athanor help guide` prints
    it whole, wherever the command runs."""
    out = cli("athanor", "help", "guide", cwd=tmp_path).stdout
    assert out.rstrip("\n") == GUIDE.read_text().rstrip("\n")
    assert "athanor help guide" in cli("athanor", "help", cwd=tmp_path).stdout
