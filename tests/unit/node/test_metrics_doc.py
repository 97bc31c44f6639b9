"""docs/operations.md lists every metric a node exports, exactly as the code registers them.

Given a node composed as node.main composes it (process metrics included), when its registry
is described (name, type, labels, help), then the table between the ``metrics:begin`` and
``metrics:end`` markers of docs/operations.md is the one scripts/gen_metrics_doc.py renders
from it: a metric added, renamed or retyped in the code without the doc (or the reverse) fails
here.  Run ``python scripts/gen_metrics_doc.py`` to rewrite the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "scripts"))

import gen_metrics_doc  # noqa: E402


def test_the_operations_doc_lists_every_metric_of_the_code():
    table = gen_metrics_doc.render()
    doc = gen_metrics_doc.DOC.read_text()
    assert gen_metrics_doc.replaced(doc, table) == doc, (
        "docs/operations.md's metric table differs from the code: run python scripts/gen_metrics_doc.py")
    # and the table is not empty: the families the issue asks for are in it
    for name in ("shoal_http_request_duration_seconds", "shoal_tus_patch_phase_seconds",
                 "shoal_transcode_seconds_per_video_second", "shoal_storage_request_duration_seconds",
                 "shoal_cache_hits_total", "shoal_members", "shoal_worker_claims_total",
                 "process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"):
        assert f"| `{name}` |" in table
