"""A short seeded chaos run against a real 3-node cluster (local profile): the checker passes.

Two minutes of uploads (one-shot and tus, valid and invalid), status reads and HLS playback from
random nodes, while the nemesis kills, pauses and restarts nodes, stops the S3 server and partitions
gossip; then every fault is healed, every video settles and garbage is collected, and the checker
reads storage directly. About 2 minutes of wall time on 2 cores.
"""

from __future__ import annotations

import json

from conftest import TEST_LADDER
from cli.chaos import format_report, read_history, run_chaos, WorkloadParams

SEED = 7
DURATION = 110.0


def test_short_chaos_run_passes_the_checker(cluster_factory, tmp_path):
    c = cluster_factory(nodes=3, overrides={"ladder": TEST_LADDER, "timing": {"upload_expiry": 20, "orphan_grace": 20, "housekeeping_interval": 3},
                                                   "processing": {"chunked": False}})
    # chunked processing stays off here: with it on, this 2-core run does not settle within the
    # bound (throughput, not safety: docs/reliability.md); the chunk invariants are checked anyway
    # the uploads stay within what 3 nodes on 2 cores process in the run (measured: about 0.7 tiny
    # videos a second, idle; the workload offers about 0.9): with 120 allowed, the backlog left at
    # the end took 70 s to clear alone and 94 s in CI, so the settle bound measured throughput.
    # With 60 (all in the first ~65 s) it measures what it is for: recovery after the faults.
    history = tmp_path / "history.jsonl"
    report = run_chaos(c.launcher, duration=DURATION, seed=SEED, history_path=history, profile="short",
                       params=WorkloadParams(threads=3, max_uploads=60), settle_bound=90.0, gc_bound=60.0,
                       say=lambda s: None)
    assert report.ok, format_report(report)
    f = report.figures
    # the run did what it claims: faults of every kind, uploads of both kinds settled both ways
    assert set(f["faults"]) >= {"kill", "pause", "storage", "partition"}, f["faults"]
    assert f["fault_errors"] == 0
    assert f["videos"].get("ready", 0) >= 10 and f["videos"].get("failed", 0) >= 1, f["videos"]
    lines = read_history(history)
    kinds = {e.get("kind") for e in lines if e["op"] == "upload" and e.get("result") == "ok"}
    assert kinds == {"oneshot", "tus"}
    assert f["segments_checked"] > 0
    assert lines[-1]["op"] == "verdict" and lines[-1]["ok"] is True
    json.dumps(f)  # the figures are JSON as they are written to the history
