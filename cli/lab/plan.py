"""What a lab is made of, computed without touching the machine: names, addresses, commands.

A lab named ``NAME`` is one Linux bridge and a network namespace per host, every one of them
named ``slab<NAME>-<suffix>`` (:func:`prefix`), so a sweep finds leftovers by that prefix alone:

    bridge  slab<NAME>-br   in the machine's own namespace, address <subnet>.1/24 (the only
                            address the lab adds outside its namespaces: clients reach the lab)
    s0      slab<NAME>-s0   <subnet>.2   weed master, filer and S3 gateway
    v1..v3  slab<NAME>-v1   <subnet>.3.. one weed volume server each (replication 001: every
                            object on two of them, so one may die without losing an object)
    h1..hN  slab<NAME>-h1   <subnet>.11..  one Shoal node each

Each host namespace is joined to the bridge by a veth pair: ``slab<NAME>-<host>`` on the bridge,
``eth0`` inside.  Invariant: a namespace has loopback and its /24 on eth0, and no other route (no
default route, no NAT, no forwarding), so nothing in the lab reaches past this machine.

Ports inside the namespaces are fixed (each host has its own address): Shoal HTTP 8000 and
gossip 7000; weed master 9333, volume 8080, filer 8888, S3 8333 (gRPC: +10000).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LabPlan", "LabHost", "LabProcess", "plan_lab", "prefix", "PlanError", "s3_identities",
           "PREFIX_ROOT", "NODE_HTTP_PORT", "NODE_GOSSIP_PORT", "S3_PORT", "MAX_HOSTS",
           "VOLUME_SERVERS", "REPLICATION"]

PREFIX_ROOT = "slab"  # every lab's namespaces and links start with this (a sweep's key)
NODE_HTTP_PORT, NODE_GOSSIP_PORT = 8000, 7000
MASTER_PORT, VOLUME_PORT, FILER_PORT, S3_PORT = 9333, 8080, 8888, 8333
VOLUME_SERVERS = 3
REPLICATION = "001"  # one extra copy on another server of the same rack
VOLUME_SIZE_LIMIT_MB = 64  # small volumes: a lab's disk stays small
VOLUMES_PER_SERVER = 16
MAX_HOSTS = 9  # Shoal hosts; addresses .11 .. .19
_NAME = re.compile(r"[a-z0-9]{1,4}")
IFNAMSIZ = 15  # Linux interface names: at most 15 bytes


class PlanError(ValueError):
    """The lab cannot be built as asked (bad name, subnet, host count)."""


def prefix(name: str) -> str:
    """``slab<name>-``: the start of every namespace and link name of lab ``name``."""
    if not _NAME.fullmatch(name):
        raise PlanError(f"lab name {name!r}: 1 to 4 lowercase letters or digits")
    return f"{PREFIX_ROOT}{name}-"


@dataclass(frozen=True)
class LabHost:
    key: str  # s0, v1.., h1..
    netns: str  # slab<name>-<key>
    veth: str  # the bridge side of its veth pair (the namespace side is eth0)
    addr: str  # its address in the lab subnet


@dataclass(frozen=True)
class LabProcess:
    name: str  # master, filer, s3, volume-v1, n1 ...
    host: str  # LabHost.key it runs in
    argv: tuple[str, ...]  # run as `ip netns exec <netns> argv...`
    node: str | None = None  # the Shoal node id, for node processes


@dataclass(frozen=True)
class LabPlan:
    name: str
    prefix: str
    subnet: str  # e.g. 10.213.0.0/24
    bridge: str
    bridge_addr: str  # with prefix length, e.g. 10.213.0.1/24
    hosts: tuple[LabHost, ...]
    dir: Path
    weed: str
    python: str
    processes: tuple[LabProcess, ...] = field(default=())

    def host(self, key: str) -> LabHost:
        for h in self.hosts:
            if h.key == key:
                return h
        raise PlanError(f"no host {key!r} in lab {self.name} (have: {', '.join(h.key for h in self.hosts)})")

    @property
    def node_hosts(self) -> tuple[LabHost, ...]:
        return tuple(h for h in self.hosts if h.key.startswith("h"))

    @property
    def storage_hosts(self) -> tuple[LabHost, ...]:
        return tuple(h for h in self.hosts if not h.key.startswith("h"))

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host('s0').addr}:{S3_PORT}"

    @property
    def config_path(self) -> Path:
        return self.dir / "cluster.yml"

    @property
    def state_dir(self) -> Path:
        return self.dir / "state"

    def node_id(self, host: LabHost) -> str:
        return "n" + host.key[1:]

    def host_of_node(self, node_id: str) -> LabHost:
        return self.host("h" + node_id[1:])

    def cluster_doc(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The lab's cluster.yml: every node at its namespace address, the lab's S3 gateway."""
        nodes = [{"id": self.node_id(h), "host": h.addr, "http_port": NODE_HTTP_PORT,
                  "gossip_port": NODE_GOSSIP_PORT} for h in self.node_hosts]
        doc: dict[str, Any] = {
            "cluster": f"lab-{self.name}",
            "profile": "local",
            "state_dir": "state",
            "nodes": nodes,
            "seeds": [n["id"] for n in nodes[:2]],
            "storage": {"endpoint": self.s3_endpoint, "bucket": "shoal", "region": "us-east-1"},
        }
        return _merge(doc, overrides or {})


def plan_lab(name: str, hosts: int, subnet: str, lab_dir: Path, *, weed: str, python: str,
             config_path: Path | None = None) -> LabPlan:
    """The whole lab for ``hosts`` Shoal hosts in ``subnet`` (a /24), its files under ``lab_dir``."""
    pre = prefix(name)
    if not 1 <= hosts <= MAX_HOSTS:
        raise PlanError(f"--hosts {hosts}: from 1 to {MAX_HOSTS}")
    try:
        net = ipaddress.IPv4Network(subnet)
    except ValueError as e:
        raise PlanError(f"subnet {subnet!r}: {e}") from None
    if net.prefixlen != 24 or not net.is_private:
        raise PlanError(f"subnet {subnet}: a private /24, e.g. 10.213.0.0/24")
    base = net.network_address

    def addr(i: int) -> str:
        return str(base + i)

    keys = ["s0"] + [f"v{i + 1}" for i in range(VOLUME_SERVERS)] + [f"h{i + 1}" for i in range(hosts)]
    numbers = [2] + [3 + i for i in range(VOLUME_SERVERS)] + [11 + i for i in range(hosts)]
    lab_hosts = tuple(LabHost(k, pre + k, pre + k, addr(n)) for k, n in zip(keys, numbers))
    for name_ in [pre + "br", *(h.veth for h in lab_hosts)]:
        assert len(name_) <= IFNAMSIZ, name_
    plan = LabPlan(name=name, prefix=pre, subnet=str(net), bridge=pre + "br",
                   bridge_addr=f"{addr(1)}/24", hosts=lab_hosts, dir=lab_dir, weed=weed,
                   python=python)
    cfg = config_path or plan.config_path
    return LabPlan(**{**plan.__dict__, "processes": _processes(plan, cfg)})


def _processes(plan: LabPlan, config_path: Path) -> tuple[LabProcess, ...]:
    """Storage first (master, volumes, filer, S3), then one node per host: the start order."""
    s0 = plan.host("s0").addr
    master = f"{s0}:{MASTER_PORT}"
    data = plan.dir / "weed"
    w = plan.weed
    out = [LabProcess("master", "s0", (
        w, "master", f"-ip={s0}", f"-ip.bind={s0}", f"-port={MASTER_PORT}",
        f"-mdir={data / 'master'}", f"-defaultReplication={REPLICATION}",
        f"-volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}", "-telemetry=false"))]
    for h in plan.storage_hosts:
        if h.key.startswith("v"):
            out.append(LabProcess(f"volume-{h.key}", h.key, (
                w, "volume", f"-ip={h.addr}", f"-ip.bind={h.addr}", f"-port={VOLUME_PORT}",
                f"-dir={data / h.key}", f"-max={VOLUMES_PER_SERVER}", f"-master={master}",
                "-preStopSeconds=0")))
    out.append(LabProcess("filer", "s0", (
        w, "filer", f"-ip={s0}", f"-ip.bind={s0}", f"-port={FILER_PORT}", f"-master={master}",
        f"-defaultReplicaPlacement={REPLICATION}", f"-defaultStoreDir={data / 'filer'}")))
    out.append(LabProcess("s3", "s0", (
        w, "s3", f"-ip={s0}", f"-ip.bind={s0}", f"-port={S3_PORT}", f"-filer={s0}:{FILER_PORT}",
        f"-config={plan.dir / 's3.json'}", "-port.iceberg=0", "-port.lance=0")))
    for h in plan.node_hosts:
        node = plan.node_id(h)
        out.append(LabProcess(node, h.key, (
            plan.python, "-m", "node", "--config", str(config_path), "--node", node), node=node))
    return tuple(out)


def s3_identities(access_key: str, secret_key: str) -> dict[str, Any]:
    """The S3 gateway's ``-config`` document: one identity, the nodes' keys, full rights."""
    return {"identities": [{"name": "shoal", "credentials": [
        {"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
