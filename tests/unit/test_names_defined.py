"""Every name our code uses is bound somewhere: a rename that misses a caller fails here, at once,
not in the teardown of a cluster test twenty minutes into the suite (it happened: a kill helper
renamed in cli/launcher.py left two callers on the old name, and every cluster test's teardown broke).

pyflakes reads each file without running it; only its undefined-name findings fail the test (unused
imports and the like are style, not breakage)."""

from __future__ import annotations

import ast
from pathlib import Path

from pyflakes import checker, messages

REPO = Path(__file__).resolve().parents[2]
TREES = ("node", "storage", "membership", "ring", "cli", "bench", "scripts", "tests", "deploy")
BREAKAGE = (messages.UndefinedName, messages.UndefinedExport, messages.UndefinedLocal)


def _sources() -> list[Path]:
    out = []
    for tree in TREES:
        root = REPO / tree
        if root.is_dir():
            out += [p for p in sorted(root.rglob("*.py")) if "node_modules" not in p.parts]
    return out


def test_every_name_used_is_bound() -> None:
    files = _sources()
    assert len(files) > 100, f"only {len(files)} Python files found under {REPO}"
    found = []
    for path in files:
        source = path.read_text()
        tree = ast.parse(source, filename=str(path))
        for m in checker.Checker(tree, filename=str(path)).messages:
            if isinstance(m, BREAKAGE):
                found.append(f"{path.relative_to(REPO)}:{m.lineno}: {m.message % m.message_args}")
    assert not found, "names used but never bound:\n" + "\n".join(found)


def test_the_check_sees_a_missing_name() -> None:
    tree = ast.parse("def stop(pid):\n    _killpg(pid, 9)\n")
    found = [m for m in checker.Checker(tree, filename="x.py").messages if isinstance(m, BREAKAGE)]
    assert [m.message_args for m in found] == [("_killpg",)]
