"""Write the metric table of docs/operations.md from a composed node's registry.

The table sits between the ``<!-- metrics:begin -->`` and ``<!-- metrics:end -->`` lines;
tests/unit/node/test_metrics_doc.py fails when it differs from what :func:`render` gives.

    python scripts/gen_metrics_doc.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "operations.md"
BEGIN, END = "<!-- metrics:begin -->", "<!-- metrics:end -->"


def render() -> str:
    """The markdown table of every metric a composed node exports (node.metrics.describe)."""
    sys.path.insert(0, str(REPO))
    import storage  # noqa: PLC0415
    from node.compose import compose_node, node_metrics  # noqa: PLC0415
    from msgspec.structs import replace  # noqa: PLC0415
    import os  # noqa: PLC0415

    from node.config import Config, NodeSpec, WebhooksConfig  # noqa: PLC0415
    from node.metrics import describe  # noqa: PLC0415

    # every part that can export metrics is on (webhooks export theirs only when configured)
    hooks = WebhooksConfig(urls=("http://127.0.0.1:9/",), secret_env="SHOAL_METRICS_DOC_SECRET")
    cfg = replace(Config(nodes=(NodeSpec("n1", "127.0.0.1", 1, 2),)), webhooks=hooks)
    os.environ.setdefault(hooks.secret_env, "doc")
    with tempfile.TemporaryDirectory() as tmp:
        node = compose_node(cfg, "n1", storage.MemoryStore(), Path(tmp), metrics=node_metrics())
        rows = describe(node.ctx.metrics.registry)
    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {kind} | {', '.join(f'`{x}`' for x in labels.split(', ') if x)} | {help_} |"
              for name, kind, labels, help_ in rows]
    return "\n".join(lines) + "\n"


def replaced(doc: str, table: str) -> str:
    """``doc`` with the text between the markers replaced by ``table``."""
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}{END}{tail}"


def main() -> None:
    DOC.write_text(replaced(DOC.read_text(), render()))


if __name__ == "__main__":
    main()
