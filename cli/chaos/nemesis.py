"""The nemesis: a seeded schedule of faults (pure) and the thread that injects them.

Two tracks run side by side, each one fault at a time:

- the *process* track hits one node at a time: ``kill`` (SIGKILL of the node's process group,
  then a restart after ``hold``) or ``pause`` (SIGSTOP, SIGCONT after ``hold``). At most one node
  is ever down or frozen, so at least N-1 nodes stay up (N >= 2);
- the *infrastructure* track: ``storage`` (stop the S3 server with SIGKILL or SIGTERM, start it
  after ``hold``) and ``partition`` (one node's gossip blocked from/to all the others, on both
  sides, healed after ``hold``).

Against a lab (``shoal lab``: hosts in network namespaces, distributed SeaweedFS), the faults are
real (:class:`cli.chaos.lab_faults.LabFaults`), on three tracks:

- the *process* track as above (kill -9 and restart, SIGSTOP/SIGCONT of a node);
- the *network* track, one fault at a time, the kinds dealt from a seeded shuffled deck (every
  kind once before any repeats), with iptables and tc inside the lab's namespaces:
  ``isolate`` (a node cut from every peer, not from storage), ``storage_cut`` (a node cut from
  storage, not from its peers), ``split`` (a minority of nodes cut from the majority and from
  storage, which stays with the majority), ``one_way`` (a node drops what one peer sends it),
  ``bandwidth`` (a host's sending capped by a tbf qdisc);
- the *storage-server* track: ``server_kill`` (kill -9 of a weed volume server, the S3 gateway,
  the filer or the master; started again after ``hold``).

:func:`plan_faults` turns ``(seed, nodes, duration, profile)`` into the whole schedule before the
run starts, so a seed replays the same faults in the same order at the same offsets.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx

__all__ = ["Fault", "FaultProfile", "healthy_within", "PROFILES", "plan_faults", "Nemesis", "LauncherFaults",
           "NETWORK_KINDS", "TRACKS", "LAB_SERVERS"]

NETWORK_KINDS = ("isolate", "storage_cut", "split", "one_way", "bandwidth")
LAB_SERVERS = ("volume-v1", "volume-v2", "volume-v3", "s3", "filer", "master")  # weed processes of a lab
TRACKS = {"kill": "process", "pause": "process", "storage": "infra", "partition": "infra",
          "server_kill": "servers", **{k: "network" for k in NETWORK_KINDS}}


def healthy_within(base_url: str, timeout: float) -> bool:
    """Poll ``/healthz`` (not /readyz: readiness needs storage, which a fault may have cut)
    until 200 or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(base_url + "/healthz", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


@dataclass(frozen=True)
class FaultProfile:
    """Seconds. A process fault starts every ``process_gap``; storage/partition every ``infra_gap``."""
    process_gap: tuple[float, float] = (20.0, 40.0)
    kill_hold: tuple[float, float] = (1.0, 6.0)  # down time before the restart
    pause_hold: tuple[float, float] = (2.0, 12.0)
    pause_share: float = 0.3  # of process faults
    infra_gap: tuple[float, float] = (40.0, 90.0)
    storage_hold: tuple[float, float] = (10.0, 30.0)
    partition_hold: tuple[float, float] = (5.0, 20.0)
    partition_share: float = 0.4  # of infrastructure faults
    first_at: float = 5.0  # no fault before this (the workload warms up)
    # lab runs only (real faults: cli.chaos.lab_faults)
    network_gap: tuple[float, float] = (20.0, 40.0)
    network_hold: tuple[float, float] = (5.0, 20.0)
    server_gap: tuple[float, float] = (40.0, 90.0)
    server_hold: tuple[float, float] = (2.0, 15.0)
    bandwidth_kbit: tuple[int, ...] = (512, 1024, 4096)


PROFILES: dict[str, FaultProfile] = {
    # the long run: kill -9 every 20-40 s, storage outages of 10-30 s
    "long": FaultProfile(),
    # a short test run: more faults per minute, shorter outages
    "short": FaultProfile(process_gap=(8.0, 14.0), kill_hold=(0.5, 3.0), pause_hold=(2.0, 6.0),
                          infra_gap=(20.0, 35.0), storage_hold=(3.0, 8.0),
                          partition_hold=(4.0, 10.0), first_at=3.0),
    # lab runs: the process track slower (a lab host is heavier), real network faults often
    "lab": FaultProfile(process_gap=(15.0, 25.0), kill_hold=(0.5, 3.0), pause_hold=(2.0, 6.0),
                        network_gap=(5.0, 9.0), network_hold=(3.0, 6.0),
                        server_gap=(15.0, 25.0), server_hold=(2.0, 6.0), first_at=3.0),
    "lab-long": FaultProfile(network_gap=(15.0, 35.0), network_hold=(5.0, 20.0),
                             server_gap=(40.0, 90.0), server_hold=(2.0, 15.0)),
}


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the run's start
    kind: str  # kill | pause | storage | partition
    target: str  # node id ("storage" for storage faults)
    hold: float  # seconds until the heal
    detail: dict = field(default_factory=dict)  # e.g. {"signal": "SIGKILL"}


def plan_faults(seed: int, nodes: list[str], duration: float,
                profile: FaultProfile = FaultProfile(), *, lab: bool = False) -> list[Fault]:
    """Every fault of a run, by start time; each heals before ``duration`` ends.  ``lab``: the
    network and storage-server tracks of a lab in place of the infrastructure track."""
    rng = random.Random(f"nemesis:{seed}")
    p = profile
    out: list[Fault] = []

    def fits(at: float, hold: float) -> bool:
        return at + hold < duration

    # process track
    t = p.first_at + rng.uniform(0, p.process_gap[0] / 2)
    while True:
        kind = "pause" if rng.random() < p.pause_share else "kill"
        hold = rng.uniform(*(p.pause_hold if kind == "pause" else p.kill_hold))
        target = rng.choice(nodes)
        if not fits(t, hold):
            break
        if len(nodes) >= 2:
            out.append(Fault(round(t, 3), kind, target, round(hold, 3)))
        t += hold + rng.uniform(*p.process_gap)
    if lab:
        out += _plan_lab(random.Random(f"nemesis-lab:{seed}"), nodes, duration, p)
        return sorted(out, key=lambda f: (f.at, f.kind))
    # infrastructure track
    t = p.first_at + rng.uniform(0, p.infra_gap[0] / 2)
    while True:
        kind = "partition" if rng.random() < p.partition_share and len(nodes) >= 2 else "storage"
        hold = rng.uniform(*(p.partition_hold if kind == "partition" else p.storage_hold))
        if not fits(t, hold):
            break
        if kind == "partition":
            out.append(Fault(round(t, 3), kind, rng.choice(nodes), round(hold, 3)))
        else:
            sig = "SIGKILL" if rng.random() < 0.5 else "SIGTERM"
            out.append(Fault(round(t, 3), kind, "storage", round(hold, 3), {"signal": sig}))
        t += hold + rng.uniform(*p.infra_gap)
    return sorted(out, key=lambda f: (f.at, f.kind))


def _plan_lab(rng: random.Random, nodes: list[str], duration: float, p: FaultProfile) -> list[Fault]:
    out: list[Fault] = []
    kinds = [k for k in NETWORK_KINDS if len(nodes) >= 2 or k in ("storage_cut", "bandwidth")]
    deck: list[str] = []
    t = p.first_at + rng.uniform(0, p.network_gap[0] / 2)
    while True:
        if not deck:
            deck = rng.sample(kinds, len(kinds))
        kind = deck.pop()
        hold = rng.uniform(*p.network_hold)
        if t + hold >= duration:
            break
        out.append(_network_fault(rng, kind, nodes, round(t, 3), round(hold, 3), p))
        t += hold + rng.uniform(*p.network_gap)
    t = p.first_at + rng.uniform(p.server_gap[0] / 4, p.server_gap[0] / 2)
    while True:
        hold = rng.uniform(*p.server_hold)
        if t + hold >= duration:
            break
        out.append(Fault(round(t, 3), "server_kill", rng.choice(LAB_SERVERS), round(hold, 3),
                         {"signal": "SIGKILL"}))
        t += hold + rng.uniform(*p.server_gap)
    return out


def _network_fault(rng: random.Random, kind: str, nodes: list[str], at: float, hold: float,
                   p: FaultProfile) -> Fault:
    """One network fault; ``detail`` names every host it touches (``hosts``: what the heal undoes)."""
    target = rng.choice(nodes)
    others = [n for n in nodes if n != target]
    if kind == "isolate":
        return Fault(at, kind, target, hold, {"cut_from": others, "hosts": [target]})
    if kind == "storage_cut":
        return Fault(at, kind, target, hold, {"cut_from": ["s0"], "hosts": [target]})
    if kind == "split":
        minority = sorted(rng.sample(nodes, max(1, (len(nodes) - 1) // 2)))
        majority = [n for n in nodes if n not in minority]
        return Fault(at, kind, ",".join(minority), hold,
                     {"minority": minority, "majority": majority, "hosts": minority})
    if kind == "one_way":
        peer = rng.choice(others)
        return Fault(at, kind, target, hold, {"drops_from": peer, "hosts": [target]})
    host = rng.choice([*nodes, "s0"])  # bandwidth: a node's host, or the storage host
    return Fault(at, kind, host, hold, {"rate_kbit": rng.choice(p.bandwidth_kbit), "hosts": [host]})


class NodeFaults:
    """What faults of a local cluster and of a lab share: the nodes' debug API (gossip blocks)
    and their health; one lock for the subclass's processes and bookkeeping."""

    def __init__(self, cfg: Any, token: str | None, ready_timeout: float) -> None:
        self.cfg = cfg
        self.token = token
        self.ready_timeout = ready_timeout
        self._lock = threading.Lock()
        self.paused: set[str] = set()
        self.blocked: dict[str, list[str]] = {}

    def block(self, node: str, ids: list[str], timeout: float = 5.0) -> None:
        """``POST /v1/debug/gossip-block`` on ``node``; raises httpx errors."""
        r = httpx.post(self.cfg.node(node).url + "/v1/debug/gossip-block", json={"ids": ids},
                       headers={"Authorization": f"Bearer {self.token}"} if self.token else {},
                       timeout=timeout)
        r.raise_for_status()
        if ids:
            self.blocked[node] = ids
        else:
            self.blocked.pop(node, None)

    def unblock_all(self) -> list[str]:
        """Every node's gossip unblocked (each tried for 10 s); the errors of those that were not."""
        errors: list[str] = []
        for node in self.cfg.node_ids:
            err = ""
            for _ in range(20):
                try:
                    self.block(node, [])
                    break
                except httpx.HTTPError as e:
                    err = f"unblock {node}: {e}"
                    time.sleep(0.5)
            else:
                errors.append(err)
        return errors

    def wait_up(self, node: str, timeout: float | None = None) -> bool:
        """Poll ``/healthz`` (not /readyz: readiness needs storage, which may be down now)."""
        return healthy_within(self.cfg.node(node).url, timeout or self.ready_timeout)


class LauncherFaults(NodeFaults):
    """Faults through a :class:`cli.Launcher` (the processes of a local cluster) and the debug API.

    One lock around the launcher (its bookkeeping is not thread-safe); waits for readiness happen
    outside it, so a node restarting while storage is down never blocks the storage heal.
    """

    def __init__(self, launcher: Any, token: str | None, *, ready_timeout: float = 90.0) -> None:
        super().__init__(launcher.cfg, token, ready_timeout)
        self.launcher = launcher
        self.killed: set[str] = set()
        self.storage_down = False

    def kill(self, node: str) -> None:
        with self._lock:
            self.paused.discard(node)
            self.killed.add(node)
            self.launcher.kill(node)

    def restart(self, node: str) -> None:
        with self._lock:
            self.launcher.start_node(node, wait=False)
            self.killed.discard(node)
        self.wait_up(node)

    def pause(self, node: str) -> None:
        with self._lock:
            if self.launcher.send_signal(node, signal.SIGSTOP, group=True):
                self.paused.add(node)

    def resume(self, node: str) -> None:
        with self._lock:
            self.launcher.send_signal(node, signal.SIGCONT, group=True)
            self.paused.discard(node)

    def stop_storage(self, sig: int) -> None:
        with self._lock:
            self.storage_down = True
            self.launcher.stop_storage(sig)

    def start_storage(self) -> None:
        with self._lock:
            self.launcher.start_storage()
            self.storage_down = False


    def heal_all(self) -> list[str]:
        """Undo every fault this object knows of (and unblock gossip everywhere); errors as text."""
        errors: list[str] = []
        for node in list(self.paused):
            self.resume(node)
        if self.storage_down or (self.cfg.storage.embedded and self.launcher.pid("storage") is None):
            try:
                self.start_storage()
            except Exception as e:  # keep healing the rest
                errors.append(f"storage: {e}")
        for node in self.cfg.node_ids:
            if self.launcher.pid(node) is None:
                try:
                    self.restart(node)
                except Exception as e:
                    errors.append(f"{node}: {e}")
        return errors + self.unblock_all()


class Nemesis:
    """Runs a planned schedule against a faults object; every fault goes to the history."""

    def __init__(self, faults: NodeFaults, schedule: list[Fault], history: Any, *,
                 start: float, stop: threading.Event, clock: Callable[[], float] = time.time) -> None:
        self.faults = faults
        self.schedule = schedule
        self.history = history
        self.start = start  # wall-clock start of the run
        self.stop = stop
        self.clock = clock
        self.last_fault_end = start
        self._lock = threading.Lock()

    def run(self) -> None:
        """Both tracks in threads; returns when every fault is healed (or the stop event fired)."""
        names = sorted({TRACKS[f.kind] for f in self.schedule})
        tracks = [[f for f in self.schedule if TRACKS[f.kind] == name] for name in names]
        threads = [threading.Thread(target=self._track, args=(t,), daemon=True, name=f"nemesis-{i}")
                   for i, t in enumerate(tracks)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()

    def _track(self, faults: list[Fault]) -> None:
        for f in faults:
            if self.stop.wait(max(0.0, self.start + f.at - self.clock())):
                return
            self._inject(f)

    def _inject(self, f: Fault) -> None:
        t0 = self.clock()
        error = None
        skipped: list[str] = []  # parts of a fault that met a node another fault had taken down
        nodes = self.faults.cfg.node_ids
        try:
            if f.kind == "kill":
                self.faults.kill(f.target)
                self.stop.wait(f.hold)
                self.faults.restart(f.target)
            elif f.kind == "pause":
                self.faults.pause(f.target)
                self.stop.wait(f.hold)
                self.faults.resume(f.target)
            elif f.kind == "storage":
                self.faults.stop_storage(getattr(signal, f.detail.get("signal", "SIGKILL")))
                self.stop.wait(f.hold)
                self.faults.start_storage()
            elif f.kind == "partition":
                others = [n for n in nodes if n != f.target]
                for side, ids in [(f.target, others), *[(o, [f.target]) for o in others]]:
                    try:
                        self.faults.block(side, ids)
                    except httpx.HTTPError as e:  # that side is down or frozen right now (the other track)
                        skipped.append(f"block on {side}: {type(e).__name__}")
                self.stop.wait(f.hold)
                for side in [f.target, *others]:
                    try:
                        self.faults.block(side, [])
                    except httpx.HTTPError as e:  # down: a restarted node starts unblocked; heal_all retries
                        skipped.append(f"unblock on {side}: {type(e).__name__}")
            elif f.kind == "server_kill":
                self.faults.kill_server(f.target)
                self.stop.wait(f.hold)
                self.faults.start_server(f.target)
            elif f.kind in NETWORK_KINDS:
                try:
                    self.faults.network(f)
                    self.stop.wait(f.hold)
                finally:
                    for host in f.detail["hosts"]:
                        self.faults.heal(host)
        except Exception as e:  # a fault that could not be injected or healed is recorded, not fatal
            error = f"{type(e).__name__}: {e}"[:300]
        t1 = self.clock()
        with self._lock:
            self.last_fault_end = max(self.last_fault_end, t1)
        self.history.write("fault", kind=f.kind, node=f.target, t0=t0, t1=t1, hold=f.hold,
                           planned_at=f.at, error=error, skipped=skipped or None, **f.detail)
