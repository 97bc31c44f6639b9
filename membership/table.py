"""The member table and the rules by which a fact changes it (pure, no clock of its own).

``MemberTable`` holds one node's view of the cluster: a ``Record`` per member,
the suspicions running, the broadcast queue of facts to piggyback, the counters
and the node's own health.  ``Swim`` (``state.py``) extends it with the probe
cycle and the message handling; every rule that changes a member's state lives
here, in ``_apply`` and the methods it calls.

Member rules (memberlist's ``state.go``; a fact is an ``Update``):

  fact about X     X unknown   accept when                          then
  alive(inc)       add alive   inc > X.inc                          X alive; cancel suspicion
  suspect(inc)     ignore      inc >= X.inc and X alive             X suspect, start timer
                                (X suspect: a new origin confirms, shortening the timer)
                                (X suspect at a lower inc: X refuted that one and is
                                 suspected afresh; a new timer starts)
  dead(inc)        ignore      inc >= X.inc and X alive|suspect     X dead
  left(inc)        ignore      inc >= X.inc and X not left          X left
  about us: suspect/dead(inc >= ours) while not leaving -> refute: incarnation = inc + 1, gossip alive.

Every accepted fact is queued for piggybacking (``dissemination.py``).
Suspicion timers (``suspicion.py``) run from the time the fact is accepted;
``Swim`` turns an expired one into a dead fact.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields, make_dataclass

from .config import MembershipConfig

from .awareness import REFUTED, Awareness
from .codec import update_size
from .dissemination import BroadcastQueue
from .events import CoreStatistics, Member, MemberChanged
from .messages import ALIVE, DEAD, LEFT, PUSH_PULL, SUSPECT, Message, Update
from .suspicion import Suspicion, expected_confirmations, suspicion_timeout


# The core's running counts: every field of CoreStatistics (the frozen view statistics() gives)
# but the health score, mutable, each starting at 0.
Counters = make_dataclass("Counters", [(f.name, int, field(default=0)) for f in fields(CoreStatistics)
                                       if f.name != "health_score"])


@dataclass
class Record:
    id: str
    addr: str
    http: str
    state: str
    incarnation: int
    since: float

    def view(self) -> Member:
        return Member(self.id, self.addr, self.http, self.state, self.incarnation, self.since)


class MemberTable:
    """One node's member table and the fact rules; ``Swim`` adds the protocol around it."""

    def __init__(self, self_id: str, addr: str, http_addr: str, *, config: MembershipConfig,
                 incarnation: int, now: float, rng: random.Random) -> None:
        self.id = self_id
        self._t = config
        self._rng = rng
        self._members: dict[str, Record] = {
            self_id: Record(self_id, addr, http_addr, ALIVE, incarnation, now)}
        self._queue = BroadcastQueue(update_size)
        self._suspicions: dict[str, Suspicion] = {}
        # Members left to probe this round (shuffled); new members are slotted in by _apply_alive.
        self._probe_order: list[str] = []
        self._leaving = False
        self._c = Counters()
        self._health = Awareness()
        self._others_cache: list[Record] | None = None
        self._dead_recently: list[Record] = []
        self._queue.push(self._alive_fact(self._members[self_id]))

    # ---- reading --------------------------------------------------------------------------
    @property
    def incarnation(self) -> int:
        return self._members[self.id].incarnation

    @property
    def leaving(self) -> bool:
        return self._leaving

    def members(self) -> list[Member]:
        return [r.view() for r in sorted(self._members.values(), key=lambda r: r.id)]

    def member(self, member_id: str) -> Member | None:
        r = self._members.get(member_id)
        return r.view() if r else None

    def alive_ids(self) -> set[str]:
        return {r.id for r in self._members.values() if r.state in (ALIVE, SUSPECT)}

    def id_of(self, addr: str) -> str | None:
        for r in self._members.values():
            if r.addr == addr:
                return r.id
        return None

    @property
    def health_score(self) -> int:
        return self._health.score

    def pending_broadcasts(self) -> int:
        return len(self._queue)

    def full_state(self, *, join: bool = False) -> Message:
        """The PUSH_PULL message carrying this node's whole table."""
        rows = []
        for r in self._members.values():
            kind = r.state
            rows.append(Update(kind, r.id, r.incarnation, r.addr, r.http,
                               self.id if kind in (SUSPECT, DEAD) else ""))
        return Message(PUSH_PULL, self.id, updates=tuple(rows), join=join)

    def settle(self) -> None:
        """Forget queued broadcasts, as if they had all been gossiped (for simulations
        that start from a cluster at rest)."""
        self._queue = BroadcastQueue(update_size)

    def _n(self) -> int:
        """Members alive or suspect, ourselves included (the N of the formulas)."""
        return len(self._others()) + 1

    def _others(self) -> list[Record]:
        """Other members alive or suspect (cached until the next state change)."""
        if self._others_cache is None:
            self._others_cache = [r for r in self._members.values()
                                  if r.id != self.id and r.state in (ALIVE, SUSPECT)]
        return self._others_cache

    # ---- facts -----------------------------------------------------------------------------------
    def _apply(self, now: float, u: Update, out: list) -> None:
        if u.kind == ALIVE:
            self._apply_alive(now, u, out)
        elif u.kind == SUSPECT:
            self._apply_suspect(now, u, out)
        elif u.kind == DEAD:
            self._apply_dead(now, u, out)
        elif u.kind == LEFT:
            self._apply_left(now, u, out)

    @staticmethod
    def _alive_fact(r: Record) -> Update:
        return Update(ALIVE, r.id, r.incarnation, r.addr, r.http)

    def _set_state(self, now: float, r: Record, state: str, out: list) -> None:
        was = r.state
        if was != state:
            r.state, r.since = state, now
            if (was in (ALIVE, SUSPECT)) != (state in (ALIVE, SUSPECT)):
                self._others_cache = None
            if state == DEAD:
                self._dead_recently = [d for d in self._dead_recently if d.state == DEAD]
                self._dead_recently.append(r)
            out.append(MemberChanged(r.view(), was))

    def _refute(self, now: float, inc: int, out: list) -> None:
        me = self._members[self.id]
        me.incarnation = max(me.incarnation, inc) + 1
        self._c.refutations += 1
        self._health.apply(REFUTED)
        self._queue.push(self._alive_fact(me))
        out.append(MemberChanged(me.view(), me.state))  # same state, new incarnation

    def _apply_alive(self, now: float, u: Update, out: list) -> None:
        if not u.addr:
            return
        if u.id == self.id:
            me = self._members[self.id]
            if not self._leaving and (u.incarnation > me.incarnation or
                                      (u.incarnation == me.incarnation and u.addr != me.addr)):
                self._refute(now, u.incarnation, out)
            return
        r = self._members.get(u.id)
        if r is None:
            r = Record(u.id, u.addr, u.http, ALIVE, u.incarnation, now)
            self._members[u.id] = r
            self._others_cache = None
            # Into the probe order at a random place (swap with a random slot: O(1)).
            order = self._probe_order
            order.append(u.id)
            j = self._rng.randrange(len(order))
            order[j], order[-1] = order[-1], order[j]
            self._queue.push(u)
            out.append(MemberChanged(r.view(), None))
            return
        if u.incarnation <= r.incarnation:
            return
        r.incarnation, r.addr, r.http = u.incarnation, u.addr, u.http
        self._suspicions.pop(u.id, None)
        self._queue.push(u)
        if r.state == ALIVE:
            out.append(MemberChanged(r.view(), ALIVE))
        self._set_state(now, r, ALIVE, out)

    def _apply_suspect(self, now: float, u: Update, out: list) -> None:
        r = self._members.get(u.id)
        if r is None or u.incarnation < r.incarnation:
            return
        if u.id == self.id:
            if not self._leaving:
                self._refute(now, u.incarnation, out)
            return
        renewed = False
        if r.state == SUSPECT:
            s = self._suspicions.get(u.id)
            if s is not None and u.incarnation == s.incarnation:
                if s.confirm(u.origin):
                    self._queue.push(u)
                return
            if u.incarnation <= r.incarnation:
                return
            # Suspected at a newer incarnation: X refuted the suspicion we hold (its alive
            # fact may never reach us: newer suspicions displace it in every queue) and is
            # suspected afresh.  A new suspicion, with a new timer, not the old deadline.
            renewed = True
        elif r.state != ALIVE:
            return
        r.incarnation = u.incarnation
        n = self._n()
        lo = suspicion_timeout(self._t.suspicion_mult, n, self._t.probe_interval)
        self._suspicions[u.id] = Suspicion(u.incarnation, now, lo, lo * self._t.suspicion_max_mult,
                                           expected_confirmations(self._t.suspicion_mult, n),
                                           u.origin or self.id)
        self._c.suspicions += 1
        self._queue.push(u)
        if renewed:
            out.append(MemberChanged(r.view(), SUSPECT))  # same state, new incarnation
        self._set_state(now, r, SUSPECT, out)

    def _apply_dead(self, now: float, u: Update, out: list) -> None:
        self._apply_gone(now, u, out, DEAD)

    def _apply_left(self, now: float, u: Update, out: list) -> None:
        self._apply_gone(now, u, out, LEFT)

    def _apply_gone(self, now: float, u: Update, out: list, state: str) -> None:
        """``dead`` or ``left`` at this incarnation (a member that left is never made dead); about
        ourselves, refuted unless we are leaving."""
        r = self._members.get(u.id)
        final = (DEAD, LEFT) if state == DEAD else (LEFT,)
        if r is None or u.incarnation < r.incarnation or r.state in final:
            return
        if u.id == self.id:
            if not self._leaving:
                self._refute(now, u.incarnation, out)
            return
        r.incarnation = u.incarnation
        self._suspicions.pop(u.id, None)
        if state == DEAD:
            self._c.deaths += 1
        self._queue.push(u)
        self._set_state(now, r, state, out)
