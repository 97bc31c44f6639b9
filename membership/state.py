"""The SWIM state machine (with Lifeguard suspicion), pure: ``handle(now, event) -> actions``.

No sockets, no trio, no clock: ``now`` is passed in (seconds on any monotonic
clock), the network is whatever executes the returned ``Send`` actions, and
randomness comes from an injected ``random.Random``.  The machine is in three
files: the events and actions (``events.py``: ``handle`` takes one event and
returns actions, the last always ``WakeAt``); the member table and every rule by
which a fact changes a member's state (``table.py``, which ``Swim`` extends);
and, here, the protocol that produces and spreads those facts.

A ping from a member we hold dead/left carries that fact back in the ack, so a
paused-then-resumed process learns it was declared dead and refutes at once.
Push-pull merges a remote table with ``dead`` read as ``suspect`` (the remote
view may be stale; we give the member the chance to refute).

Probe cycle, every ``probe_interval``: ping the next member of a shuffled
round-robin over alive and suspect members (a suspect's ping carries the
suspicion, Lifeguard's "buddy system", so it refutes at once); no ack within
``probe_timeout`` -> ask ``indirect_probes`` random members to ping it
(PING_REQ) and ping it over a stream (``StreamPing``, memberlist's TCP
fallback: a connection retransmits what a lone datagram loses); still no ack
when the interval ends -> suspect it.  Both timers are stretched by the node's
own health (``awareness.py``, Lifeguard's Local Health Multiplier): a failed
probe or a refutation raises the score, an acked probe lowers it.  Gossip tick, every
``probe_interval / 5`` (memberlist: 200 ms / 1 s): when facts are queued, send
them to ``GOSSIP_NODES`` random members.  Anti-entropy: every
``push_pull_scale(push_pull_interval, n)``, a push-pull with a random member, or
(probability ``RECONNECT_PROBABILITY``, or when no one else is alive) with a
member held dead, so that the two sides of a healed partition find each other.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from .awareness import PROBE_FAILED, PROBE_SUCCEEDED
from .codec import UPDATES_BUDGET
from .config import MembershipConfig
from .dissemination import push_pull_scale, retransmit_limit
from .events import (CoreStatistics, LeaveRequested, Member, MemberChanged, PushPullReceived,
                     PushPullWith, Received, Send, StreamAck, StreamAckReceived, StreamPing,
                     StreamPingReceived, Tick, WakeAt)
from .messages import ACK, ALIVE, DEAD, GOSSIP, LEFT, PING, PING_REQ, SUSPECT, Message, Update
from .table import MemberTable, Record

# The events and actions are imported from here too (the machine's one import path).
__all__ = ["CoreStatistics", "LeaveRequested", "Member", "MemberChanged", "PushPullReceived",
           "PushPullWith", "Received", "Send", "StreamAck", "StreamAckReceived", "StreamPing",
           "StreamPingReceived", "Swim", "Tick", "WakeAt"]

GOSSIP_NODES = 3  # memberlist LAN GossipNodes
GOSSIP_PER_PROBE = 5  # gossip ticks per probe interval (memberlist LAN: 200 ms vs 1 s)
RECONNECT_PROBABILITY = 0.25  # share of push-pulls sent to a member held dead (partition healing)
GOSSIP_TO_THE_DEAD = 30  # probe intervals a dead member still receives gossip (memberlist: 30 s)


@dataclass
class _Probe:
    seq: int
    target: str
    timeout_at: float
    end_at: float
    acked: bool = False
    indirect_sent: bool = False


@dataclass
class _Relay:
    requester_addr: str
    requester_seq: int
    expires: float


class Swim(MemberTable):
    """One node's view of the cluster, advanced by ``handle``."""

    def __init__(self, self_id: str, addr: str, http_addr: str, *, config: MembershipConfig,
                 incarnation: int, now: float, rng: random.Random) -> None:
        super().__init__(self_id, addr, http_addr, config=config, incarnation=incarnation,
                         now=now, rng=rng)
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._seq = 0
        self._gossip_interval = config.probe_interval / GOSSIP_PER_PROBE
        # First timers staggered so that nodes started together do not probe in lockstep.
        self._next_probe = now + rng.random() * config.probe_interval
        self._next_gossip = now + self._gossip_interval
        self._next_push_pull = now + config.push_pull_interval * (0.5 + rng.random())
        self._heard_from_other = False

    # ---- reading (the table's own readers are in table.py) ------------------------------
    def joined(self) -> bool:
        """Heard from at least one other member."""
        return self._heard_from_other

    def statistics(self) -> CoreStatistics:
        return CoreStatistics(**asdict(self._c), health_score=self._health.score)

    # ---- the one entry point ---------------------------------------------------------------------
    def handle(self, now: float, event) -> list:
        out: list = []
        if isinstance(event, Tick):
            self._on_tick(now, out)
        elif isinstance(event, Received):
            self._on_message(now, event.addr, event.message, out)
        elif isinstance(event, PushPullReceived):
            self._on_push_pull(now, event.message, out)
        elif isinstance(event, StreamPingReceived):
            self._on_stream_ping(now, event.message, out)
        elif isinstance(event, StreamAckReceived):
            self._on_stream_ack(now, event.message, out)
        elif isinstance(event, LeaveRequested):
            self._on_leave(now, out)
        else:
            raise TypeError(f"unknown event {event!r}")
        out.append(WakeAt(self._next_wake()))
        return out

    def _next_wake(self) -> float:
        t = min(self._next_probe, self._next_gossip, self._next_push_pull)
        p = self._probe
        if p is not None and not p.acked and not p.indirect_sent:
            t = min(t, p.timeout_at)
        for s in self._suspicions.values():
            t = min(t, s.deadline())
        return t

    # ---- timers -------------------------------------------------------------------------------
    def _on_tick(self, now: float, out: list) -> None:
        for mid, s in list(self._suspicions.items()):
            if now >= s.deadline():
                del self._suspicions[mid]
                r = self._members[mid]
                if r.state == SUSPECT:
                    self._apply_dead(now, Update(DEAD, mid, r.incarnation, origin=self.id), out)
        p = self._probe
        if p is not None and not p.acked and not p.indirect_sent and now >= p.timeout_at:
            self._send_indirect(now, p, out)
        if now >= self._next_probe:
            self._end_probe(now, out)
            if not self._leaving:
                self._start_probe(now, out)
            # Invariant: a probe gets its whole interval, even when this tick came late.
            self._next_probe = now + self._health.scale(self._t.probe_interval)
        if now >= self._next_gossip:
            self._gossip(now, out)
            self._next_gossip = max(self._next_gossip + self._gossip_interval, now)
        if now >= self._next_push_pull:
            self._push_pull(out)
            self._next_push_pull = now + push_pull_scale(self._t.push_pull_interval, self._n()) \
                * (0.75 + 0.5 * self._rng.random())
        for seq in [s for s, rl in self._relays.items() if now >= rl.expires]:
            del self._relays[seq]

    def _next_target(self) -> Record | None:
        for _ in range(2):
            while self._probe_order:
                r = self._members.get(self._probe_order.pop())
                if r is not None and r.id != self.id and r.state in (ALIVE, SUSPECT):
                    return r
            self._probe_order = [r.id for r in self._members.values()
                                 if r.id != self.id and r.state in (ALIVE, SUSPECT)]
            self._rng.shuffle(self._probe_order)
        return None

    def _start_probe(self, now: float, out: list) -> None:
        target = self._next_target()
        if target is None:
            self._probe = None
            return
        self._seq += 1
        h = self._health
        self._probe = _Probe(self._seq, target.id, now + h.scale(self._t.probe_timeout),
                             now + h.scale(self._t.probe_interval))
        self._c.probes_sent += 1
        out.append(Send(target.addr, self._packet(PING, self._seq, target.id,
                                                  first=self._buddy(target))))

    def _buddy(self, target: Record) -> Update | None:
        """The suspicion we hold about ``target``, to hand it with our ping (Lifeguard's
        buddy system: the suspect hears it first-hand and refutes at once)."""
        if target.state != SUSPECT:
            return None
        s = self._suspicions.get(target.id)
        origin = s.origin if s is not None else self.id
        return Update(SUSPECT, target.id, target.incarnation, origin=origin)

    def _send_indirect(self, now: float, p: _Probe, out: list) -> None:
        p.indirect_sent = True
        target = self._members.get(p.target)
        if target is None or target.state not in (ALIVE, SUSPECT):
            return
        relays = self._random_members(self._t.indirect_probes, exclude={p.target})
        for r in relays:
            self._c.indirect_probes_sent += 1
            out.append(Send(r.addr, self._packet(PING_REQ, p.seq, target.id, target.addr)))
        # memberlist's TCP fallback, sent along with the indirect probes: it carries no
        # piggyback but the buddy suspicion (a failed stream would waste the retransmits).
        buddy = self._buddy(target)
        self._c.stream_pings_sent += 1
        out.append(StreamPing(target.addr, Message(PING, self.id, p.seq, target.id, updates=(
            (buddy,) if buddy is not None else ())), p.end_at))

    def _end_probe(self, now: float, out: list) -> None:
        p, self._probe = self._probe, None
        if p is None:
            return
        if p.acked:
            self._health.apply(PROBE_SUCCEEDED)
            return
        self._health.apply(PROBE_FAILED)
        r = self._members.get(p.target)
        if r is not None and r.state == ALIVE:
            self._apply_suspect(now, Update(SUSPECT, r.id, r.incarnation, origin=self.id), out)

    def _gossip(self, now: float, out: list) -> None:
        if not self._queue:
            return
        for r in self._gossip_targets(now):
            updates = self._piggyback()
            if not updates:
                break
            out.append(Send(r.addr, Message(GOSSIP, self.id, updates=updates)))

    def _push_pull(self, out: list) -> None:
        if self._leaving:
            return
        peers = self._random_members(1, exclude=set())
        # Reconnect (as Serf does): now and then exchange state with a member we hold dead, and
        # always when nobody else is left.  After a partition heals, this is how the two sides
        # learn of each other again: the "dead" side reads that it was declared dead and refutes.
        dead = [r for r in self._members.values() if r.state == DEAD and r.id != self.id]
        if dead and (not peers or self._rng.random() < RECONNECT_PROBABILITY):
            out.append(PushPullWith(self._rng.choice(dead).addr))
        elif peers:
            out.append(PushPullWith(peers[0].addr))

    def _gossip_targets(self, now: float) -> list[Record]:
        """Random members to gossip to: alive, suspect (so it hears it is suspected and
        refutes) and recently dead (so a paused process learns it was declared dead)."""
        horizon = now - GOSSIP_TO_THE_DEAD * self._t.probe_interval
        pool = self._others() + [r for r in self._dead_recently if r.since > horizon
                                 and r.state == DEAD]
        if len(pool) <= GOSSIP_NODES:
            return pool
        return self._rng.sample(pool, GOSSIP_NODES)

    def _random_members(self, k: int, exclude: set[str]) -> list[Record]:
        others = self._others()
        if len(others) > 4 * (k + len(exclude)):
            # Large cluster: sample and filter rather than copy the whole table.
            out: list[Record] = []
            chosen: set[str] = set()
            while len(out) < k:
                r = others[self._rng.randrange(len(others))]
                if r.id not in chosen and r.id not in exclude and r.state == ALIVE:
                    chosen.add(r.id)
                    out.append(r)
                elif len(chosen) + len(exclude) >= len(others):
                    break
                else:
                    chosen.add(r.id)
            return out
        pool = [r for r in others if r.id not in exclude and r.state == ALIVE]
        if len(pool) <= k:
            self._rng.shuffle(pool)
            return pool
        return self._rng.sample(pool, k)

    # ---- packets ---------------------------------------------------------------------------------
    def _piggyback(self, first: Update | None = None) -> tuple[Update, ...]:
        limit = retransmit_limit(self._t.retransmit_mult, self._n())
        return self._queue.get(UPDATES_BUDGET, limit, first)

    def _packet(self, kind: str, seq: int, target: str = "", target_addr: str = "",
                first: Update | None = None) -> Message:
        return Message(kind, self.id, seq, target, target_addr, self._piggyback(first))

    def _heard(self, now: float, msg: Message, out: list) -> bool:
        """Take in the facts of a message from another member; False for our own (ignored)."""
        if msg.sender == self.id:
            return False
        self._heard_from_other = True
        for u in msg.updates:
            self._apply(now, u, out)
        return True

    def _on_message(self, now: float, addr: str, msg: Message, out: list) -> None:
        if not self._heard(now, msg, out):
            return
        if msg.kind == PING:
            ack = self._answer(msg)
            if ack is not None:
                out.append(Send(addr, ack))
            return  # the ack carries the corrections below, as its first fact
        first = self._correction(msg)
        if first is not None:
            out.append(Send(addr, Message(GOSSIP, self.id, updates=(first,))))
        if msg.kind == PING_REQ:
            if self._leaving or not msg.target_addr:
                return
            self._seq += 1
            self._relays[self._seq] = _Relay(addr, msg.seq, now + self._t.probe_interval)
            out.append(Send(msg.target_addr, self._packet(PING, self._seq, msg.target)))
        elif msg.kind == ACK:
            relay = self._relays.pop(msg.seq, None)
            if relay is not None:
                out.append(Send(relay.requester_addr, self._packet(ACK, relay.requester_seq)))
                return
            p = self._probe
            if p is not None and p.seq == msg.seq and not p.acked:
                p.acked = True
                self._c.acks_received += 1

    def _answer(self, ping: Message) -> Message | None:
        """The ACK for ``ping`` (None if it was meant for a previous owner of our address)."""
        if ping.target and ping.target != self.id:
            return None
        return self._packet(ACK, ping.seq, first=self._correction(ping))

    def _correction(self, msg: Message) -> Update | None:
        """A fact to send straight back to ``msg``'s sender, when one of us holds news the
        other lacks about the two of us (gossip alone reaches a given member only with high
        probability: at 20% loss, about one refutation in 500 misses someone):

        * it told us we are suspect or dead: our alive fact (the refutation, or the newer
          incarnation it missed; it may hold a stale suspicion nothing else will cancel);
        * we hold it suspect, dead or left: that fact (it refutes, or learns it is stale).
        """
        me = self._members[self.id]
        if not self._leaving and any(u.id == self.id and u.kind in (SUSPECT, DEAD)
                                     for u in msg.updates):
            return self._alive_fact(me)
        sender = self._members.get(msg.sender)
        if sender is None:
            return None
        if sender.state == SUSPECT:
            return self._buddy(sender)
        if sender.state in (DEAD, LEFT):
            # Tell a member we hold dead why nobody answers it: it will refute.
            return Update(sender.state, sender.id, sender.incarnation, origin=self.id)
        return None

    def _on_stream_ping(self, now: float, msg: Message, out: list) -> None:
        if msg.kind != PING or not self._heard(now, msg, out):
            return
        ack = self._answer(msg)
        if ack is not None:
            out.append(StreamAck(ack))

    def _on_stream_ack(self, now: float, msg: Message, out: list) -> None:
        if msg.kind != ACK or not self._heard(now, msg, out):
            return
        p = self._probe
        if p is not None and p.seq == msg.seq and not p.acked:
            p.acked = True
            self._c.acks_received += 1
            self._c.stream_acks_received += 1

    def _on_push_pull(self, now: float, msg: Message, out: list) -> None:
        if msg.sender != self.id:
            self._heard_from_other = True
        for u in msg.updates:
            if u.kind == DEAD:
                u = Update(SUSPECT, u.id, u.incarnation, origin=u.origin or msg.sender)
            self._apply(now, u, out)

    def _on_leave(self, now: float, out: list) -> None:
        if self._leaving:
            return
        me = self._members[self.id]
        self._leaving = True
        self._probe = None
        was, me.state, me.since = me.state, LEFT, now
        fact = Update(LEFT, self.id, me.incarnation)
        self._queue.push(fact)
        out.append(MemberChanged(me.view(), was))
        # Tell several members at once; the gossip tick keeps retransmitting.
        n = max(GOSSIP_NODES, retransmit_limit(self._t.retransmit_mult, self._n()))
        for r in self._random_members(n, exclude=set()):
            out.append(Send(r.addr, Message(GOSSIP, self.id, updates=(fact,))))
