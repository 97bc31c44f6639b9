"""A deterministic simulator: many ``Swim`` cores on an in-memory network.

One seeded ``random.Random`` drives everything (the cores' choices, packet
loss, latency), and events are ordered by (time, insertion number), so the
same seed and the same calls give the same run, byte for byte.

The network delivers each datagram after ``latency`` seconds (uniform in the
given range) unless it is lost (probability ``loss``) or crosses a partition.
Push-pull exchanges ride a reliable stream: no loss, but partitions and dead
nodes cut them.  Tests and the benchmark read ``changes`` (every state
transition every node saw) and ``view(observer, member)``.

Stream pings (the core's ``StreamPing``, a TCP connection in the runtime) are
modelled segment by segment, as TCP would carry them over the same lossy
network: the SYN / SYN-ACK exchange is lost with probability ``1 - (1-loss)^2``
and retried after ``SYN_RTO`` (1 s, Linux ``TCP_TIMEOUT_INIT``) then 2 s, 4 s...;
the request and the reply are each lost with probability ``loss`` and resent
after ``DATA_RTO`` (200 ms, Linux ``TCP_RTO_MIN``), doubling.  The ping fails if
the reply is not back by the action's deadline (the end of the probe interval),
or either end is down or cut off.  So a stream is far less lossy than a
datagram when there is time to retransmit, and no better when there is not
(a lost SYN costs a whole second).  ``stream_delay`` is that model.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field, replace

from .codec import Encoder
from .config import MembershipConfig
from .messages import ALIVE, Message, Update
from .state import (LeaveRequested, MemberChanged, PushPullReceived, PushPullWith, Received,
                     Send, StreamAck, StreamAckReceived, StreamPing, StreamPingReceived, Swim,
                     Tick, WakeAt)

SYN_RTO = 1.0  # first SYN retransmission (Linux TCP_TIMEOUT_INIT), doubling
DATA_RTO = 0.2  # first data retransmission (Linux TCP_RTO_MIN), doubling


def stream_delay(draw, loss: float, one_way: float, *, handshake: bool) -> float:
    """Seconds for one step of a TCP exchange over a network losing ``loss`` of packets:
    with ``handshake``, connect (SYN, SYN-ACK) and deliver the request; without, deliver
    one data segment.  ``draw()`` gives uniform [0, 1) numbers; ``one_way`` is the
    latency of one crossing."""
    t = 0.0
    if handshake:
        rto = SYN_RTO
        while draw() < loss or draw() < loss:  # SYN or SYN-ACK lost: wait, resend the SYN
            t += rto
            rto *= 2
            if t > 60.0:
                return float("inf")
        t += 2 * one_way
    rto = DATA_RTO
    while draw() < loss:
        t += rto
        rto *= 2
        if t > 60.0:
            return float("inf")
    return t + one_way


@dataclass(frozen=True, slots=True)
class Change:
    t: float
    observer: str
    member: str
    state: str
    incarnation: int
    was: str | None


@dataclass
class SimNode:
    id: str
    addr: str
    core: Swim
    up: bool = True
    wake: float = float("inf")
    sent_bytes: int = 0
    sent_packets: int = 0
    stream_pings: int = 0


@dataclass
class Simulation:
    seed: int
    config: MembershipConfig = field(default_factory=MembershipConfig)
    loss: float = 0.0
    latency: tuple[float, float] = (0.0005, 0.002)
    measure_bytes: bool = False

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.now = 0.0
        self.nodes: dict[str, SimNode] = {}
        self.by_addr: dict[str, str] = {}
        self.changes: list[Change] = []
        self._heap: list = []
        self._n = 0
        self._cut: set[frozenset[str]] = set()  # pairs of node ids that cannot talk
        self._encoder = Encoder(b"k" * 32, wall=lambda: 1_700_000_000.0 + self.now, boot=1)

    # ---- building clusters -------------------------------------------------------------------
    def add(self, node_id: str, *, incarnation: int = 1) -> SimNode:
        addr = f"{node_id}:7946"
        core = Swim(node_id, addr, f"{node_id}:8000", config=self.config,
                    incarnation=incarnation, now=self.now, rng=random.Random(self.rng.random()))
        node = SimNode(node_id, addr, core)
        self.nodes[node_id] = node
        self.by_addr[addr] = node_id
        self._tick_soon(node)
        return node

    @classmethod
    def cluster(cls, n: int, seed: int, **kw) -> "Simulation":
        """``n`` nodes that already know each other (as after a completed join)."""
        sim = cls(seed=seed, **kw)
        ids = [f"n{i}" for i in range(n)]
        for i in ids:
            sim.add(i)
        table = Message("push-pull", "bootstrap", updates=tuple(
            Update(ALIVE, i, 1, sim.nodes[i].addr, f"{i}:8000") for i in ids))
        for i in ids:
            sim.nodes[i].core.handle(sim.now, PushPullReceived(table))
            sim.nodes[i].core.settle()
        return sim

    def join(self, node_id: str, seed_id: str, *, incarnation: int = 1) -> SimNode:
        """Start ``node_id`` and have it push-pull with ``seed_id`` (as the runtime does)."""
        node = self.add(node_id, incarnation=incarnation)
        self._push_pull(node, self.nodes[seed_id].addr, join=True)
        return node

    # ---- faults ---------------------------------------------------------------------------------
    def kill(self, node_id: str) -> None:
        self.nodes[node_id].up = False

    def restart(self, node_id: str, seed_id: str, *, incarnation: int) -> SimNode:
        return self.join(node_id, seed_id, incarnation=incarnation)

    def pause(self, node_id: str) -> None:
        self.nodes[node_id].up = False

    def resume(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.up = True
        self._tick_soon(node)

    def leave(self, node_id: str, linger: float | None = None) -> None:
        """Graceful leave: announce, keep gossiping ``linger`` seconds, then stop."""
        node = self.nodes[node_id]
        self._feed(node, LeaveRequested())
        linger = self.config.probe_interval if linger is None else linger
        self._at(self.now + linger, ("stop", node_id))

    def partition(self, a: list[str], b: list[str]) -> None:
        self._cut |= {frozenset((x, y)) for x in a for y in b}

    def heal(self) -> None:
        self._cut.clear()

    # ---- running ----------------------------------------------------------------------------------
    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_until(self, t: float, stop=None) -> bool:
        """Process events up to time ``t``; with ``stop`` (a predicate of the
        simulation, checked after each membership change), return True as soon as it holds."""
        heap = self._heap
        while heap and heap[0][0] <= t:
            at, _, ev = heapq.heappop(heap)
            self.now = at
            seen = len(self.changes)
            self._dispatch(ev)
            if stop is not None and len(self.changes) != seen and stop(self):
                return True
        self.now = max(self.now, t)
        return False

    def view(self, observer: str, member: str) -> str | None:
        m = self.nodes[observer].core.member(member)
        return m.state if m else None

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.up]

    # ---- internals ----------------------------------------------------------------------------
    def _at(self, t: float, ev: tuple) -> None:
        self._n += 1
        heapq.heappush(self._heap, (t, self._n, ev))

    def _tick_soon(self, node: SimNode) -> None:
        node.wake = self.now
        self._at(self.now, ("tick", node.id, self.now))

    def _dispatch(self, ev: tuple) -> None:
        kind = ev[0]
        if kind == "deliver":
            node = self.nodes[ev[1]]
            if node.up:
                self._feed(node, Received(ev[2], ev[3]))
        elif kind == "tick":
            node = self.nodes[ev[1]]
            if node.up and node.wake == ev[2]:
                self._feed(node, Tick())
        elif kind == "pp_request":
            src, dst = self.nodes[ev[1]], self.nodes[ev[2]]
            if dst.up and not self._is_cut(src.id, dst.id):
                reply = dst.core.full_state()
                self._feed(dst, PushPullReceived(ev[3]))
                self._at(self.now + self._latency(), ("pp_reply", src.id, dst.id, reply))
        elif kind == "pp_reply":
            src = self.nodes[ev[1]]
            if src.up and not self._is_cut(ev[1], ev[2]):
                self._feed(src, PushPullReceived(ev[3]))
        elif kind == "sp_request":  # a stream ping's request reached the target
            _, src_id, dst_id, msg, deadline = ev
            src, dst = self.nodes[src_id], self.nodes[dst_id]
            if not dst.up or self._is_cut(src_id, dst_id):
                return
            ack = self._feed(dst, StreamPingReceived(msg))
            if ack is None:
                return
            if self.measure_bytes:
                dst.sent_bytes += len(self._encoder.encode(ack))
            back = self.now + stream_delay(self.rng.random, self.loss, self._latency(),
                                           handshake=False)
            if back <= deadline:
                self._at(back, ("sp_reply", src_id, dst_id, ack))
        elif kind == "sp_reply":
            src = self.nodes[ev[1]]
            if src.up and not self._is_cut(ev[1], ev[2]):
                self._feed(src, StreamAckReceived(ev[3]))
        elif kind == "stop":
            self.nodes[ev[1]].up = False

    def _is_cut(self, a: str, b: str) -> bool:
        return bool(self._cut) and frozenset((a, b)) in self._cut

    def _sent(self, node: SimNode, a: Send | StreamPing) -> str | None:
        """``node`` sends ``a.message`` (its bytes counted when ``measure_bytes``): the id of the
        node at ``a.addr``, or None when there is none or the partition cuts it off from ``node``."""
        if self.measure_bytes:
            node.sent_bytes += len(self._encoder.encode(a.message))
        dst = self.by_addr.get(a.addr)
        return None if dst is None or self._is_cut(node.id, dst) else dst

    def _latency(self) -> float:
        lo, hi = self.latency
        return lo + (hi - lo) * self.rng.random()

    def _push_pull(self, node: SimNode, addr: str, join: bool) -> None:
        dst = self.by_addr.get(addr)
        if dst is not None:
            self._at(self.now + self._latency(),
                     ("pp_request", node.id, dst, node.core.full_state(join=join)))

    def _stream_ping(self, node: SimNode, a: StreamPing) -> None:
        node.stream_pings += 1
        dst = self._sent(node, a)
        if dst is None:
            return
        at = self.now + stream_delay(self.rng.random, self.loss, self._latency(), handshake=True)
        if at <= a.deadline:
            self._at(at, ("sp_request", node.id, dst, a.message, a.deadline))

    def _feed(self, node: SimNode, event) -> Message | None:
        """Run ``event`` through ``node``'s core; returns the ``StreamAck`` message, if any."""
        reply = None
        for a in node.core.handle(self.now, event):
            if isinstance(a, Send):
                self._send(node, a)
            elif isinstance(a, WakeAt):
                if a.at != node.wake or a.at <= self.now:
                    node.wake = max(a.at, self.now)
                    self._at(node.wake, ("tick", node.id, node.wake))
            elif isinstance(a, MemberChanged):
                m = a.member
                self.changes.append(Change(self.now, node.id, m.id, m.state, m.incarnation, a.was))
            elif isinstance(a, PushPullWith):
                self._push_pull(node, a.addr, a.join)
            elif isinstance(a, StreamPing):
                self._stream_ping(node, a)
            elif isinstance(a, StreamAck):
                reply = a.message
        return reply

    def _send(self, node: SimNode, a: Send) -> None:
        node.sent_packets += 1
        dst = self._sent(node, a)
        if dst is None or (self.loss and self.rng.random() < self.loss):
            return
        self._at(self.now + self._latency(), ("deliver", dst, node.addr, a.message))
