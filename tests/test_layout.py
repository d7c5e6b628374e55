"""The house rules, read from the source: only cli/ imports hydra/omegaconf, no room imports a
room above it, and the rooms import each other without a circle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "athanor"

# Lower numbers are lower rooms: a module may import its own level or below, never above.
LEVELS = {
    "errors": 0,
    "registry": 0,
    "distributed": 0,
    "typecheck": 0,
    "seeding": 0,
    "process": 0,  # signals, the collector pause, the process clock: nothing of training
    "plugins": 0,  # loads the user's modules and entry-point plugins (registry only)
    "config": 1,
    "metrics": 2,
    "models": 3,
    "data": 3,
    "augment": 3,
    "optim": 3,
    "losses": 3,
    "tasks": 3,
    "record": 4,
    "observe": 4,
    "engine": 5,
    "offline": 6,  # evaluate / export a finished run's checkpoint
    "launch": 6,  # starts a worker group that runs the engine
    "sweep": 6,
    "compare": 6,  # reproduce / diff: runs compared from their folders
    "cli": 7,
    # the public face and the module entry points sit on top
    "__init__": 8,
    "__main__": 8,
    "train": 8,
    "evaluate": 8,
}


def room(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imports(path: Path) -> list[str]:
    """Every module this file imports (top level and inside functions)."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            if node.module == "athanor":  # from athanor import x: x is a room
                found += [f"athanor.{a.name}" for a in node.names]
    return found


SOURCES = sorted(SRC.rglob("*.py"))


def test_every_room_has_a_level():
    assert {room(p) for p in SOURCES} <= set(LEVELS), "a new room needs its place in LEVELS"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_only_cli_imports_hydra_or_omegaconf(path):
    if room(path) == "cli":
        return
    bad = [m for m in imports(path) if m.split(".")[0] in ("hydra", "omegaconf")]
    assert not bad, f"{path.relative_to(SRC)} imports {bad}: only athanor/cli/ may"


def test_no_room_imports_one_above_it():
    upward = []
    for path in SOURCES:
        mine = room(path)
        for module in imports(path):
            parts = module.split(".")
            if parts[0] != "athanor" or len(parts) < 2:
                continue
            theirs = parts[1]
            if theirs in LEVELS and LEVELS[theirs] > LEVELS[mine]:
                upward.append(f"{path.relative_to(SRC)} -> {module}")
    assert not upward, "imports that go up:\n" + "\n".join(upward)


def test_rooms_import_each_other_without_a_circle():
    edges: dict[str, set[str]] = {}
    for path in SOURCES:
        mine = room(path)
        for module in imports(path):
            parts = module.split(".")
            if parts[0] == "athanor" and len(parts) > 1 and parts[1] in LEVELS and parts[1] != mine:
                edges.setdefault(mine, set()).add(parts[1])

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    circles = sorted(r for r in edges if r in reach(r))
    assert not circles, (
        f"rooms in an import circle: {circles} ({ {r: sorted(edges[r]) for r in circles} })"
    )


def test_registries_live_in_leaf_modules():
    """A registry is created in a module that imports none of its builders, so a builder module
    can import it without an import-order cycle (the old package-__init__ registries needed
    E402-suppressed imports at the bottom)."""
    registries = []
    for path in SOURCES:
        text = path.read_text()
        assert "E402" not in text, (
            f"{path.relative_to(SRC)} suppresses E402 (an import-order trick)"
        )
        made = re.findall(r"^(\w+): Registry(?:\[\w+\])? = Registry\(", text, re.M)
        registries += made
        if made:
            assert path.name != "__init__.py", (
                f"{path.relative_to(SRC)}: a registry in a package init"
            )
    assert len(registries) >= 8, (
        registries
    )  # models, data, optim, tasks, augment, losses, metrics, trackers
