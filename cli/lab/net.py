"""The lab's only door to the kernel's network: ``ip`` (iproute2) and ``iptables``, as root.

Every call is one bounded subprocess (``TIMEOUT``); a failure raises :class:`LabError` with the
command and its stderr.  Nothing here decides names or addresses (``cli.lab.plan`` does); this
module only makes, lists and removes what it is told, and:

- touches the machine's own namespace only for the lab bridge, its address, the bridge side
  of each veth pair, and (only where the root ``FORWARD`` policy drops bridged packets) one
  ``ACCEPT`` rule for traffic from the bridge to the bridge;
- puts fault rules (a chain ``SHOAL-LAB`` of the namespace's ``filter`` table, jumped to from
  ``INPUT`` and ``OUTPUT``) and bandwidth caps (a ``tbf`` qdisc on its ``eth0``: ``tc netem``
  does not exist in every kernel, ``tbf`` does) inside a lab namespace, so they vanish with it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Sequence

__all__ = ["LabError", "run", "require_tools", "netns_list", "link_names", "netns_pids",
           "add_bridge", "add_host", "delete_netns", "delete_link", "ns_run", "cut", "heal",
           "root_forward_rule", "delete_root_rule", "FAULT_CHAIN", "TIMEOUT", "addresses_in_use",
           "cap", "uncap", "caps", "lossy"]

TIMEOUT = 15.0  # seconds for any one ip/iptables call
FAULT_CHAIN = "SHOAL-LAB"


class LabError(RuntimeError):
    """The lab could not be built, changed or removed (the message says what and why)."""


def run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=TIMEOUT)
    except FileNotFoundError:
        raise LabError(f"{argv[0]}: not installed (the lab needs iproute2 and iptables)") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(argv)}: no answer within {TIMEOUT:.0f} s") from None
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done


def require_tools() -> None:
    """Raise LabError unless we are root with ``ip`` and ``iptables`` on the PATH."""
    if os.geteuid() != 0:
        raise LabError("the lab makes network namespaces and a bridge: run it as root")
    missing = [t for t in ("ip", "iptables") if shutil.which(t) is None]
    if missing:
        raise LabError(f"missing {' and '.join(missing)}: apt-get install iproute2 iptables")


def netns_list() -> list[str]:
    """Names of every named network namespace (``ip netns list``)."""
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def link_names() -> list[str]:
    """Names of every link in the machine's own namespace (``eth0@if3`` -> ``eth0``)."""
    out = run(["ip", "-o", "link", "show"]).stdout
    names = []
    for line in out.splitlines():
        m = re.match(r"\d+:\s+([^:@\s]+)", line)
        if m:
            names.append(m.group(1))
    return names


def addresses_in_use() -> list[str]:
    """Every IPv4 network with a route in the machine's own namespace (``ip -4 route``)."""
    out = run(["ip", "-4", "route", "show", "table", "all"]).stdout
    return [line.split()[0] for line in out.splitlines() if line and line.split()[0][0].isdigit()]


def netns_pids(netns: str) -> list[int]:
    done = run(["ip", "netns", "pids", netns], check=False)
    return [int(p) for p in done.stdout.split() if p.isdigit()]


def add_bridge(name: str, addr: str) -> None:
    """The lab bridge in the machine's namespace, with its one address, up."""
    run(["ip", "link", "add", name, "type", "bridge"])
    run(["ip", "addr", "add", addr, "dev", name])
    run(["ip", "link", "set", name, "up"])


def add_host(netns: str, veth: str, bridge: str, addr_cidr: str) -> None:
    """A namespace joined to the bridge: veth ``veth`` on the bridge, ``eth0`` inside with the
    address; loopback up; no other route (the /24 is the only one the kernel adds)."""
    run(["ip", "netns", "add", netns])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    run(["ip", "link", "set", veth, "master", bridge, "up"])
    ns_run(netns, ["ip", "link", "set", "lo", "up"])
    ns_run(netns, ["ip", "addr", "add", addr_cidr, "dev", "eth0"])
    ns_run(netns, ["ip", "link", "set", "eth0", "up"])


def ns_run(netns: str, argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess:
    return run(["ip", "netns", "exec", netns, *argv], check=check)


def delete_netns(netns: str) -> None:
    run(["ip", "netns", "delete", netns], check=False)


def delete_link(name: str) -> None:
    run(["ip", "link", "delete", name], check=False)


# ---- faults (inside a lab namespace) -----------------------------------------------------------
def _ensure_chain(netns: str) -> None:
    if ns_run(netns, ["iptables", "-w", "-S", FAULT_CHAIN], check=False).returncode != 0:
        ns_run(netns, ["iptables", "-w", "-N", FAULT_CHAIN])
        ns_run(netns, ["iptables", "-w", "-I", "INPUT", "-j", FAULT_CHAIN])
        ns_run(netns, ["iptables", "-w", "-I", "OUTPUT", "-j", FAULT_CHAIN])


def cut(netns: str, addrs: Sequence[str], *, inbound: bool = True, outbound: bool = True) -> None:
    """Drop every packet between the namespace and each of ``addrs`` (one way if asked)."""
    _ensure_chain(netns)
    for a in addrs:
        if inbound:
            ns_run(netns, ["iptables", "-w", "-A", FAULT_CHAIN, "-s", a, "-j", "DROP"])
        if outbound:
            ns_run(netns, ["iptables", "-w", "-A", FAULT_CHAIN, "-d", a, "-j", "DROP"])


def lossy(netns: str, share: float) -> None:
    """Drop a random ``share`` (0..1) of every packet the namespace sends and of every packet
    it receives (iptables ``statistic --mode random``): a lossy link, without netem."""
    if not 0.0 < share < 1.0:
        raise LabError(f"loss share {share}: between 0 and 1")
    _ensure_chain(netns)
    for chain_rule in (["-i", "eth0"], ["-o", "eth0"]):
        ns_run(netns, ["iptables", "-w", "-A", FAULT_CHAIN, *chain_rule, "-m", "statistic",
                       "--mode", "random", "--probability", f"{share:.4f}", "-j", "DROP"])


def heal(netns: str) -> None:
    """Remove every fault rule of the namespace (its chain stays, empty)."""
    if ns_run(netns, ["iptables", "-w", "-S", FAULT_CHAIN], check=False).returncode == 0:
        ns_run(netns, ["iptables", "-w", "-F", FAULT_CHAIN])


def cap(netns: str, rate_kbit: int) -> None:
    """Limit what the namespace sends (its eth0) to ``rate_kbit`` kbit/s with a token bucket;
    packets that wait longer than 500 ms are dropped.  Replaces an earlier cap."""
    burst = max(1600, rate_kbit * 1000 // 8 // 50)  # bytes: 20 ms at the rate, at least one frame
    ns_run(netns, ["tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate",
                   f"{rate_kbit}kbit", "burst", str(burst), "latency", "500ms"])


def uncap(netns: str) -> None:
    """Remove the namespace's bandwidth cap (none: nothing to do)."""
    if caps(netns):
        ns_run(netns, ["tc", "qdisc", "del", "dev", "eth0", "root"], check=False)


def caps(netns: str) -> list[str]:
    """The namespace's tbf qdiscs on eth0, as ``tc`` prints them (empty: no cap, or no ``tc``
    on this machine, so none could have been set)."""
    if shutil.which("tc") is None:
        return []
    out = ns_run(netns, ["tc", "qdisc", "show", "dev", "eth0"], check=False).stdout
    return [line for line in out.splitlines() if line.startswith("qdisc tbf")]


# ---- the machine's own FORWARD chain (only where it would drop the lab's bridged packets) -----
def root_forward_rule(bridge: str) -> list[str] | None:
    """Where bridged packets pass iptables and FORWARD drops them, insert one ACCEPT for the
    bridge and return its rule spec (to delete later); else None (nothing was added)."""
    try:
        with open("/proc/sys/net/bridge/bridge-nf-call-iptables") as f:
            if f.read().strip() != "1":
                return None
    except FileNotFoundError:  # br_netfilter not loaded: bridged packets skip iptables
        return None
    policy = run(["iptables", "-w", "-S", "FORWARD"]).stdout.splitlines()[:1]
    if policy != ["-P FORWARD DROP"]:
        return None
    spec = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
    run(["iptables", "-w", "-I", *spec])
    return spec


def delete_root_rule(spec: Sequence[str]) -> None:
    run(["iptables", "-w", "-D", *spec], check=False)
