"""The nemesis's plan against a lab (cli.chaos.nemesis, pure): seeded, bounded, every network kind
dealt before any repeats, one network fault at a time, storage servers killed, no simulated kinds."""

from __future__ import annotations

import pytest

from cli.chaos import PROFILES, plan_faults
from cli.chaos.nemesis import LAB_SERVERS, NETWORK_KINDS, TRACKS

NODES = ["n1", "n2", "n3"]


@pytest.mark.parametrize("seed", [1, 7, 99])
def test_a_lab_plan_deals_every_network_kind_and_kills_storage_servers(seed):
    plan = plan_faults(seed, NODES, 90, PROFILES["lab"], lab=True)
    assert plan == plan_faults(seed, NODES, 90, PROFILES["lab"], lab=True)
    assert all(f.at + f.hold < 90 for f in plan)
    kinds = {f.kind for f in plan}
    assert kinds >= set(NETWORK_KINDS) | {"server_kill"}
    assert not kinds & {"storage", "partition"}  # the simulated kinds stay with local clusters
    network = sorted((f for f in plan if TRACKS[f.kind] == "network"), key=lambda f: f.at)
    assert sorted(f.kind for f in network[:len(NETWORK_KINDS)]) == sorted(NETWORK_KINDS)  # a deck
    for a, b in zip(network, network[1:]):  # one at a time: healed before the next
        assert b.at >= a.at + a.hold
    servers = [f for f in plan if f.kind == "server_kill"]
    assert all(f.target in LAB_SERVERS and f.detail["signal"] == "SIGKILL" for f in servers)


def test_each_network_fault_names_the_hosts_its_heal_undoes():
    plan = plan_faults(3, NODES, 600, PROFILES["lab-long"], lab=True)
    for f in plan:
        d = f.detail
        if f.kind == "isolate":
            assert d["cut_from"] == [n for n in NODES if n != f.target] and d["hosts"] == [f.target]
        elif f.kind == "storage_cut":
            assert d["cut_from"] == ["s0"] and d["hosts"] == [f.target]
        elif f.kind == "split":
            assert len(d["minority"]) < len(d["majority"]) and d["hosts"] == d["minority"]
            assert sorted(d["minority"] + d["majority"]) == NODES
        elif f.kind == "one_way":
            assert d["drops_from"] in NODES and d["drops_from"] != f.target
        elif f.kind == "bandwidth":
            assert f.target in [*NODES, "s0"] and d["rate_kbit"] in PROFILES["lab-long"].bandwidth_kbit


def test_a_plan_without_a_lab_is_unchanged_by_the_lab_tracks():
    plan = plan_faults(7, NODES, 600, PROFILES["long"])
    assert {f.kind for f in plan} <= {"kill", "pause", "storage", "partition"}
