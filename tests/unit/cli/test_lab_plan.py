"""The lab's plan (cli/lab/plan.py) is pure: names, addresses and commands, checked without I/O.

Given a lab of N hosts in a /24, then every namespace and link carries the lab's prefix and fits
Linux's 15-byte interface names, every address is distinct and inside the subnet, every
process binds only to its own host's address, and the cluster file names the nodes at their
namespace addresses and the lab's S3 gateway.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from cli.lab.plan import (IFNAMSIZ, MAX_HOSTS, REPLICATION, PlanError, plan_lab, prefix,
                          s3_identities)
from cli.lab.runtime import _count_data_nodes, _overlaps


def _plan(hosts=3, name="t1", subnet="10.213.7.0/24"):
    return plan_lab(name, hosts, subnet, Path("/tmp/lab-x"), weed="/bin/weed", python="/bin/py")


@pytest.mark.parametrize("hosts", [1, 3, MAX_HOSTS])
def test_names_carry_the_prefix_and_fit_interface_names(hosts):
    p = _plan(hosts)
    names = [p.bridge] + [h.netns for h in p.hosts] + [h.veth for h in p.hosts]
    assert all(n.startswith("slabt1-") and len(n) <= IFNAMSIZ for n in names)
    assert len({h.netns for h in p.hosts}) == len(p.hosts)
    assert [h.key for h in p.node_hosts] == [f"h{i + 1}" for i in range(hosts)]
    assert [h.key for h in p.storage_hosts] == ["s0", "v1", "v2", "v3"]


def test_addresses_are_distinct_and_inside_the_subnet_with_the_bridge_first():
    p = _plan(MAX_HOSTS)
    net = ipaddress.ip_network(p.subnet)
    addrs = [ipaddress.ip_address(h.addr) for h in p.hosts]
    assert len(set(addrs)) == len(addrs) and all(a in net for a in addrs)
    assert p.bridge_addr == "10.213.7.1/24" and ipaddress.ip_address("10.213.7.1") not in addrs


def test_every_process_binds_to_its_own_host_only():
    p = _plan(3)
    for proc in p.processes:
        addr = p.host(proc.host).addr
        binds = [a.split("=", 1)[1] for a in proc.argv if a.startswith(("-ip=", "-ip.bind="))]
        assert all(b == addr for b in binds), proc
    names = [proc.name for proc in p.processes]
    assert names == ["master", "volume-v1", "volume-v2", "volume-v3", "filer", "s3", "n1", "n2", "n3"]
    master = next(proc for proc in p.processes if proc.name == "master")
    assert f"-defaultReplication={REPLICATION}" in master.argv
    assert all(f"-master={p.host('s0').addr}:9333" in proc.argv
               for proc in p.processes if proc.name.startswith("volume"))


def test_the_cluster_file_names_nodes_at_namespace_addresses_and_the_lab_s3():
    p = _plan(3)
    doc = p.cluster_doc({"timing": {"lease_seconds": 3}})
    assert [(n["id"], n["host"]) for n in doc["nodes"]] == [
        ("n1", "10.213.7.11"), ("n2", "10.213.7.12"), ("n3", "10.213.7.13")]
    assert doc["storage"]["endpoint"] == "http://10.213.7.2:8333"
    assert doc["timing"] == {"lease_seconds": 3} and doc["seeds"] == ["n1", "n2"]
    assert p.host_of_node("n2").netns == "slabt1-h2"


@pytest.mark.parametrize("name, hosts, subnet, why", [
    ("toolong", 3, "10.213.0.0/24", "lab name"),
    ("Up", 3, "10.213.0.0/24", "lab name"),
    ("a", 0, "10.213.0.0/24", "--hosts"),
    ("a", MAX_HOSTS + 1, "10.213.0.0/24", "--hosts"),
    ("a", 3, "10.213.0.0/16", "a private /24"),
    ("a", 3, "8.8.8.0/24", "a private /24"),
    ("a", 3, "not-a-net", "subnet"),
])
def test_a_lab_that_cannot_be_built_is_refused_with_the_reason(name, hosts, subnet, why):
    with pytest.raises(PlanError, match=why):
        plan_lab(name, hosts, subnet, Path("/tmp/x"), weed="w", python="p")


def test_prefix_and_identities():
    assert prefix("0") == "slab0-"
    doc = s3_identities("ak", "sk")
    assert doc["identities"][0]["credentials"] == [{"accessKey": "ak", "secretKey": "sk"}]


@pytest.mark.parametrize("route, subnet, overlaps", [
    ("10.213.0.0/24", "10.213.0.0/24", True),
    ("10.0.0.0/8", "10.213.0.0/24", True),
    ("10.213.0.5", "10.213.0.0/24", True),
    ("192.0.2.0/24", "10.213.0.0/24", False),
    ("default", "10.213.0.0/24", False),
])
def test_overlapping_routes(route, subnet, overlaps):
    assert _overlaps(route, subnet) is overlaps


def test_data_nodes_are_counted_across_racks_and_data_centers():
    topo = {"Topology": {"DataCenters": [
        {"Racks": [{"DataNodes": [{"Url": "a"}, {"Url": "b"}]}, {"DataNodes": [{"Url": "c"}]}]},
        {"Racks": [{"DataNodes": []}]}]}}
    assert _count_data_nodes(topo) == 3 and _count_data_nodes({}) == 0
