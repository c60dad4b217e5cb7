"""The package's layers: a module may import its own folder and any lower layer, never a
higher one. The ranks are the table in docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipesql"

# Lowest first. Folders of one rank never import each other.
LAYERS: list[set[str]] = [
    {"__init__", "config", "progress", "allocator", "lru"},  # progress: how work reports itself; allocator: glibc's mmap threshold; lru: the bounded cache
    {"storage"},
    {"sql"},
    {"corpora", "decompile"},
    {"agent"},
    {"models", "scale"},
    {"fetch", "validate", "generate", "train"},
    {"merge", "evaluate", "serve"},
    {"rl"},  # GRPO: the train stage's machinery, rewarded by evaluate's scoring
    {"cli"},  # runs a stage by name (importlib), so it imports none
    {"pipeline", "__main__"},
]
RANK = {room: rank for rank, rooms in enumerate(LAYERS) for room in rooms}


def room_of(module: str) -> str:
    """``pipesql.sql.execute`` -> ``sql``; ``pipesql`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every ``pipesql...`` module the file imports, with its line, lazy imports included.
    Relative imports count as a higher layer's so that the check cannot be sidestepped."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("pipesql")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append((node.lineno, "relative import"))
            elif node.module == "pipesql":  # `from pipesql import x` imports the room x
                found += [(node.lineno, f"pipesql.{alias.name}") for alias in node.names]
            elif (node.module or "").startswith("pipesql"):
                found.append((node.lineno, node.module))
    return found


def violations(package: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        room = relative.parts[0].removesuffix(".py")
        if room not in RANK:
            problems.append(f"{relative}: folder {room!r} has no layer; add it to LAYERS and docs/architecture.md")
            continue
        for line, target in imports_of(path):
            other = room_of(target)
            if other == room or other == "__version__":
                continue
            if target == "relative import":
                problems.append(f"{relative}:{line}: use an absolute import (pipesql....)")
            elif other not in RANK:
                problems.append(f"{relative}:{line}: imports unknown {target}")
            elif RANK[other] >= RANK[room]:
                problems.append(f"{relative}:{line}: {room} (layer {RANK[room]}) imports {target} (layer {RANK[other]})")
    return problems


def test_no_module_imports_a_higher_or_sibling_layer() -> None:
    assert violations() == []


def test_every_top_level_entry_has_a_layer() -> None:
    entries = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert entries - set(RANK) == set()


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    fake = tmp_path / "pipesql"
    (fake / "sql").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "sql" / "__init__.py").write_text("")
    (fake / "sql" / "bad.py").write_text("def f():\n    from pipesql.evaluate import scoring\n")
    (fake / "sql" / "sibling.py").write_text("from pipesql import agent\n")
    found = violations(fake)
    assert any("sql/bad.py:2" in p and "pipesql.evaluate" in p for p in found)
    assert any("sql/sibling.py:1" in p and "pipesql.agent" in p for p in found)


@pytest.mark.parametrize("room", ["decompile", "validate"])
def test_same_rank_rooms_may_not_import_each_other(room: str, tmp_path: Path) -> None:
    fake = tmp_path / "pipesql" / "generate"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "x.py").write_text(f"import pipesql.{room}\n")
    found = violations(fake.parent)
    expected_bad = RANK[room] >= RANK["generate"]
    assert bool(found) == expected_bad
