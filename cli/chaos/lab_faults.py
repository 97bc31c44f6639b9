"""Real faults for a chaos run against a lab (``shoal lab``): the nemesis's hands there.

:class:`LabFaults` offers what :class:`cli.chaos.nemesis.Nemesis` calls, through the lab's own
fault functions (:class:`cli.lab.Lab`: iptables and tc inside its namespaces, processes started
in their namespace):

- ``kill``/``restart``/``pause``/``resume`` of a node: SIGKILL / SIGSTOP / SIGCONT of its
  process group, restarted inside its namespace;
- ``kill_server``/``start_server``: the same for a weed process (volume server, S3 gateway,
  filer, master);
- ``network(fault)``: the network kinds of :data:`cli.chaos.nemesis.NETWORK_KINDS`, and
  ``heal(host)``: that host's fault rules and bandwidth cap removed;
- ``block`` (gossip blocked through the debug API), so ``heal_all`` also undoes what a run of
  the simulated kinds may have left.

Invariant: :meth:`heal_all` leaves every lab process running, every host without fault rules or
cap, every node's gossip unblocked (errors are returned as text, never raised); ``lab down``
removes namespaces, and with them any rule or cap, whatever a crashed run left.

:func:`lab_of` finds the lab a cluster file belongs to (its folder holds the lab's state file).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from ..lab import Lab
from ..lab.net import LabError
from ..lab.state import LabState
from .nemesis import Fault, NodeFaults

__all__ = ["LabFaults", "lab_of"]


def lab_of(config: Path) -> Lab | None:
    """The lab whose ``lab up`` wrote ``config`` (``<lab dir>/cluster.yml`` beside ``lab.json``),
    or None for any other cluster file."""
    lab_dir = Path(config).resolve().parent
    state = LabState.load(lab_dir)
    if state is None or not state.netns:
        return None
    return Lab.open(state.name, lab_dir)


class LabFaults(NodeFaults):
    """Faults of one lab; thread-safe (one lock around the lab's state file and processes)."""

    def __init__(self, lab: Lab, cfg: Any, token: str | None, *, ready_timeout: float = 90.0) -> None:
        super().__init__(cfg, token, ready_timeout)
        self.lab = lab

    # ---- processes --------------------------------------------------------------------------
    def kill(self, node: str) -> None:
        with self._lock:
            self.paused.discard(node)
            self.lab.signal_process(node, signal.SIGKILL)
        self._wait_gone(node)

    def restart(self, node: str) -> None:
        self._start(node)
        self.wait_up(node)

    def pause(self, node: str) -> None:
        with self._lock:
            if self.lab.signal_process(node, signal.SIGSTOP):
                self.paused.add(node)

    def resume(self, node: str) -> None:
        with self._lock:
            self.lab.signal_process(node, signal.SIGCONT)
            self.paused.discard(node)

    def kill_server(self, name: str) -> None:
        with self._lock:
            self.lab.signal_process(name, signal.SIGKILL)
        self._wait_gone(name)

    def start_server(self, name: str) -> None:
        self._start(name)

    def _start(self, name: str) -> None:
        with self._lock:
            if not self.lab.running(name):
                self.lab.restart_process(name)

    def _wait_gone(self, name: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.lab.running(name) and time.monotonic() < deadline:
            time.sleep(0.05)

    # ---- the network ------------------------------------------------------------------------
    def network(self, f: Fault) -> None:
        """Inject one network fault as its plan says (``detail`` names peers, rates, hosts)."""
        d = f.detail
        if f.kind in ("isolate", "storage_cut"):
            self.lab.cut(f.target, d["cut_from"])
        elif f.kind == "split":  # the majority keeps storage; the minority loses both
            for node in d["minority"]:
                self.lab.cut(node, [*d["majority"], "s0"])
        elif f.kind == "one_way":
            self.lab.cut(f.target, [d["drops_from"]], inbound=True, outbound=False)
        elif f.kind == "bandwidth":
            self.lab.cap(f.target, int(d["rate_kbit"]))
        else:
            raise ValueError(f"not a network fault: {f.kind}")

    def heal(self, host: str) -> None:
        self.lab.heal(host)

    # ---- the end of a run -------------------------------------------------------------------
    def heal_all(self) -> list[str]:
        """Every host healed, every process running (storage first), gossip unblocked."""
        errors: list[str] = []
        for host in self.lab.plan.hosts:
            try:
                self.lab.heal(host.key)
            except LabError as e:
                errors.append(f"heal {host.key}: {e}")
        for node in list(self.paused):
            self.resume(node)
        for name in self.lab.process_names():  # start order: master, volumes, filer, s3, nodes
            try:
                self._start(name)
            except LabError as e:
                errors.append(f"{name}: {e}")
        for node in self.cfg.node_ids:
            if not self.wait_up(node):
                errors.append(f"{node}: not up within {self.ready_timeout:.0f} s")
        return errors + self.unblock_all()
