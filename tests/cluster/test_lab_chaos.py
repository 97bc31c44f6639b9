"""A short chaos run against a lab with real faults: the checker's verdict is clean.

Given a lab of 3 Shoal hosts on distributed SeaweedFS, ``run_chaos`` finds the lab from its
cluster file (``cli.chaos.lab_of``) and, for ``DURATION`` seconds of workload (one-shot and tus
uploads, valid and invalid, status reads, playback from random nodes), injects on three tracks:
kill -9 / SIGSTOP of nodes; one network fault at a time (a node cut from its peers, a node cut from
storage, a minority/majority split, a one-way link, a tbf bandwidth cap: iptables and tc in the
namespaces), each kind at least once; and kill -9 + restart of weed servers.  Then every fault is
healed and the checker reads storage directly: 0 acknowledged uploads lost, 0 double commits,
0 partial playlists served, every valid video ready within ``SETTLE`` s of the last fault, and no
other anomaly.  Finally ``lab down`` leaves nothing.  Skips only where the machine refuses to make
a network namespace.  About 3 minutes here (2 cores).
"""

from __future__ import annotations

import pytest

from cli.chaos import WorkloadParams, format_report, lab_of, run_chaos
from cli.chaos.nemesis import NETWORK_KINDS
from cli.lab import leftovers
from cli.launcher import Launcher
from lab_support import lab_for_test

pytestmark = pytest.mark.cluster

SEED = 5
DURATION = 90.0
SETTLE = 60.0  # s after the last fault for every acknowledged video to be ready or failed


@pytest.fixture
def chaos_lab(tmp_path):
    overrides = {"timing": {"upload_expiry": 20, "orphan_grace": 20, "housekeeping_interval": 3}}
    with lab_for_test(tmp_path, "k", overrides=overrides) as the_lab:
        yield the_lab


def test_lab_chaos_run_with_real_faults_passes_the_checker(chaos_lab, tmp_path):
    config = chaos_lab.up()
    lab = lab_of(config)
    assert lab is not None and lab.plan.name == chaos_lab.plan.name
    report = run_chaos(Launcher(config), duration=DURATION, seed=SEED, lab=lab, profile="lab",
                       history_path=tmp_path / "history.jsonl",
                       params=WorkloadParams(threads=2, max_uploads=18),
                       settle_bound=SETTLE, gc_bound=60.0, say=print)
    print(format_report(report))
    assert report.ok, format_report(report)
    f = report.figures
    assert set(f["faults"]) >= {*NETWORK_KINDS, "server_kill"}, f["faults"]
    assert f["fault_errors"] == 0
    assert f["videos"].get("ready", 0) >= 5, f["videos"]
    assert f["last_fault_to_all_settled"] is not None and f["last_fault_to_all_settled"] <= SETTLE

    chaos_lab.down()
    left = leftovers(chaos_lab.plan.name, chaos_lab.plan.dir)
    assert left == {"netns": [], "links": [], "processes": []}, left
