"""The nemesis: a seeded schedule of faults (pure) and the thread that injects them.

Two tracks run side by side, each one fault at a time:

- the *process* track hits one node at a time: ``kill`` (SIGKILL of the node's process group,
  then a restart after ``hold``) or ``pause`` (SIGSTOP, SIGCONT after ``hold``). At most one node
  is ever down or frozen, so at least N-1 nodes stay up (N >= 2);
- the *infrastructure* track: ``storage`` (stop the S3 server with SIGKILL or SIGTERM, start it
  after ``hold``) and ``partition`` (one node's gossip blocked from/to all the others, on both
  sides, healed after ``hold``).

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

__all__ = ["Fault", "FaultProfile", "PROFILES", "plan_faults", "Nemesis", "LauncherFaults"]


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


PROFILES: dict[str, FaultProfile] = {
    # the long run: kill -9 every 20-40 s, storage outages of 10-30 s
    "long": FaultProfile(),
    # a short test run: more faults per minute, shorter outages
    "short": FaultProfile(process_gap=(8.0, 14.0), kill_hold=(0.5, 3.0), pause_hold=(2.0, 6.0),
                          infra_gap=(20.0, 35.0), storage_hold=(3.0, 8.0),
                          partition_hold=(4.0, 10.0), first_at=3.0),
}


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the run's start
    kind: str  # kill | pause | storage | partition
    target: str  # node id ("storage" for storage faults)
    hold: float  # seconds until the heal
    detail: dict = field(default_factory=dict)  # e.g. {"signal": "SIGKILL"}


def plan_faults(seed: int, nodes: list[str], duration: float,
                profile: FaultProfile = FaultProfile()) -> list[Fault]:
    """Every fault of a run, by start time; each heals before ``duration`` ends."""
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


class LauncherFaults:
    """Faults through a :class:`cli.Launcher` (the processes of a local cluster) and the debug API.

    One lock around the launcher (its bookkeeping is not thread-safe); waits for readiness happen
    outside it, so a node restarting while storage is down never blocks the storage heal.
    """

    def __init__(self, launcher: Any, token: str | None, *, ready_timeout: float = 90.0) -> None:
        self.launcher = launcher
        self.cfg = launcher.cfg
        self.token = token
        self.ready_timeout = ready_timeout
        self._lock = threading.Lock()
        self.paused: set[str] = set()
        self.killed: set[str] = set()
        self.storage_down = False
        self.blocked: dict[str, list[str]] = {}

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

    def wait_up(self, node: str, timeout: float | None = None) -> bool:
        """Poll ``/healthz`` (not /readyz: readiness needs storage, which may be down now)."""
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        url = self.cfg.node(node).url + "/healthz"
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        return False

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
        for node in self.cfg.node_ids:
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


class Nemesis:
    """Runs a planned schedule against a faults object; every fault goes to the history."""

    def __init__(self, faults: LauncherFaults, schedule: list[Fault], history: Any, *,
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
        tracks = [[f for f in self.schedule if f.kind in ("kill", "pause")],
                  [f for f in self.schedule if f.kind in ("storage", "partition")]]
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
        except Exception as e:  # a fault that could not be injected or healed is recorded, not fatal
            error = f"{type(e).__name__}: {e}"[:300]
        t1 = self.clock()
        with self._lock:
            self.last_fault_end = max(self.last_fault_end, t1)
        self.history.write("fault", kind=f.kind, node=f.target, t0=t0, t1=t1, hold=f.hold,
                           planned_at=f.at, error=error, skipped=skipped or None, **f.detail)
