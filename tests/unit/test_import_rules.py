"""The import rules the packages state at their top, checked on the source (no imports run).

Given every module of a package, when its imports are read from its syntax tree (top level and
inside functions alike), then each names only what the package's rule allows: the lower layers
(storage, ring, membership) never reach into the node; inside the node, records, upload, process
and play import only downwards and never the HTTP edge; only node/http (and the process wiring,
node/main.py and node/compose.py, which start hypercorn) import the web stack.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

NODE_COMMON = {"node.log", "node.config", "storage"}  # `from node import log` is judged as node.log
# package -> prefixes its modules may import from this project (stdlib and third party are
# checked separately: WEB_STACK below)
RULES: dict[str, set[str]] = {
    "storage": {"storage"},
    "ring": {"ring"},
    "membership": {"membership"},
    "node/records": NODE_COMMON | {"node.records"},
    "node/upload": NODE_COMMON | {"node.records", "node.upload", "node.peer_auth"},
    "node/chunks": NODE_COMMON | {"node.records", "node.chunks", "ring"},
    "node/process": NODE_COMMON | {"node.records", "node.chunks", "node.process"},
    "node/play": NODE_COMMON | {"node.records", "node.play", "node.peer_auth", "ring"},
    "node/webhooks": NODE_COMMON | {"node.records", "node.webhooks"},
}
PROJECT = ("node", "storage", "ring", "membership", "cli")
WEB_STACK = ("quart", "quart_trio", "werkzeug", "hypercorn", "h11")
WEB_ALLOWED = ("node/http/", "node/main.py", "node/compose.py")


def imports_of(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import in ``path``; relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            out.append((node.lineno, module, [a.name for a in node.names]))
    return out


def _modules(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def _allowed(target: str, names: list[str], allowed: set[str]) -> bool:
    if target == "node":  # `from node import log, peer_auth`: judge each name as node.<name>
        return all(f"node.{n}" in allowed or any(f"node.{n}".startswith(a + ".") for a in allowed)
                   for n in names)
    return any(target == a or target.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize("target, names", [("node.http.app", []), ("node", ["http"]), ("node.process", []),
                                           ("node", ["play"]), ("node.cluster", [])])
def test_a_lower_node_package_may_not_import_the_edge_or_a_sibling(target, names):
    # the check itself: `from node import x` and `import node.x.y` are judged by the name, not by
    # the "node" prefix they share with every allowed module
    assert not _allowed(target, names, RULES["node/upload"])
    assert _allowed("node", ["log", "peer_auth"], RULES["node/upload"])


@pytest.mark.parametrize("package", sorted(RULES))
def test_a_package_imports_only_what_its_rule_allows(package):
    allowed = RULES[package]
    bad = []
    for path in _modules(package):
        for line, target, names in imports_of(path):
            if target.split(".")[0] not in PROJECT:
                continue
            if not _allowed(target, names, allowed):
                bad.append(f"{path.relative_to(REPO)}:{line} imports {target} {names or ''}")
    assert not bad, "\n".join(bad)


def test_only_the_http_edge_imports_the_web_stack():
    bad = []
    for folder in ("node", "storage", "ring", "membership"):
        for path in _modules(folder):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith(WEB_ALLOWED):
                continue
            for line, target, _ in imports_of(path):
                if target.split(".")[0] in WEB_STACK:
                    bad.append(f"{rel}:{line} imports {target}")
    assert not bad, "\n".join(bad)


def test_every_node_package_states_its_rule_at_its_top():
    for face in sorted((REPO / "node").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(face.read_text())) or ""
        assert "Import rule" in doc, f"{face.relative_to(REPO)} does not say what it may import"


def test_every_test_module_has_a_name_of_its_own():
    # pytest imports test modules by basename (rootdir-relative "prepend" mode, no __init__.py):
    # two files with one name make the second fail to collect, and with it the whole run
    names: dict[str, list[str]] = {}
    for path in (REPO / "tests").rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(REPO)))
    assert not {n: p for n, p in names.items() if len(p) > 1}
