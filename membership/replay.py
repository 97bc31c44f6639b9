"""Replay protection that no single packet can poison: a time window and a bounded seen-set.

The rule (pure: the caller passes ``now``, seconds on its wall clock):

* A packet carries its name (``key``: sender, boot id and per-boot counter for datagrams; a
  random nonce for TCP frame headers) and the sender's clock when it was sent (``sent_at``).
* It is accepted only if ``|sent_at - now| <= window`` and its name is not in the seen-set;
  accepting it adds the name.  A name is kept while its ``sent_at`` is inside the window;
  after that the window alone refuses the packet, and the name is dropped.
* There is no high-water mark: a packet only ever adds its own name, so one packet (a
  far-future counter, a node restarted with its clock stepped back, a made-up boot id) can
  refuse nothing but exact copies of itself, and only while it is inside the window.

Bound: at most ``capacity`` names.  A new name that finds the set full pushes out the name
sent longest ago (counted in ``forgotten``); an exact copy of that packet, still inside the
window, would then be accepted once more.  This fails open on purpose: refusing instead would
let whoever fills the set (a key holder flooding: nobody else can make names the set keeps,
since copies are refused and forgeries fail the MAC first) silence every member for the
whole window, while a replayed gossip fact is at worst stale and loses to newer
incarnations, exactly as after a receiver restarts and forgets everything.  Genuine traffic
stays far below the default capacity (docs/membership.md).

``check`` returns ``None`` (accepted) or the drop reason: ``"stale"`` or ``"replayed"``.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Hashable


class ReplayGuard:
    """The seen-set and its time window.  Invariant: ``len(self) <= capacity``."""

    def __init__(self, window: float, capacity: int) -> None:
        if window <= 0 or capacity < 1:
            raise ValueError("window must be > 0 and capacity >= 1")
        self.window = window
        self.capacity = capacity
        self.forgotten = 0  # names pushed out by a full set before their window ended
        self._seen: dict[Hashable, float] = {}  # name -> sent_at
        self._by_time: list[tuple[float, int, Hashable]] = []  # heap of (sent_at, n, name)
        self._n = itertools.count()

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, key: Hashable, sent_at: float, now: float) -> str | None:
        """Accept (``None``, and remember ``key``) or refuse with a reason."""
        self._expire(now)
        if abs(sent_at - now) > self.window:
            return "stale"
        if key in self._seen:
            return "replayed"
        if len(self._seen) >= self.capacity:
            _, _, old = heapq.heappop(self._by_time)
            del self._seen[old]
            self.forgotten += 1
        self._seen[key] = sent_at
        heapq.heappush(self._by_time, (sent_at, next(self._n), key))
        return None

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        heap = self._by_time
        while heap and heap[0][0] < horizon:
            _, _, key = heapq.heappop(heap)
            del self._seen[key]
