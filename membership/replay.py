"""Replay protection that no single packet can poison: a time window and a bounded seen-set.

The rule (pure: the caller passes ``now``, seconds on the wall clock):

* A packet carries its identity (``key``: sender, boot id, per-boot counter for datagrams; a
  random nonce for stream headers) and the sender's clock when it was sent (``sent_at``).
* It is accepted only if ``|sent_at - now| <= window`` and its key is not in the seen-set;
  accepting records it.  An entry is kept while its ``sent_at`` is inside the window; after
  that the window check alone refuses the packet, so the entry is dropped.
* There is no high-water mark per sender: a packet only ever adds its own key, so one packet
  (a far-future counter, a node restarted with its clock stepped back, a forged boot id) can
  refuse nothing but exact copies of itself.

Bound: at most ``capacity`` keys.  When a new packet finds the set full, the entry with the
oldest ``sent_at`` is forgotten and ``floor`` rises to its ``sent_at``: from then on packets sent
at or before the floor are refused as ``stale`` (a replay of a forgotten packet must not pass);
a new packet older than every entry is refused as ``stale`` without forgetting anything.
The floor only refuses the past and falls out of use once ``now - window`` passes it, so even a
flood by a key holder (the only one who can mint packets) shrinks the window while it lasts;
it never silences anyone after it stops.  Genuine traffic is a few packets per probe interval
per member, far below the default capacity (see docs/membership.md).

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
        self.floor = float("-inf")  # Invariant: every forgotten entry was sent at or before this
        self._seen: dict[Hashable, float] = {}  # key -> sent_at
        self._by_time: list[tuple[float, int, Hashable]] = []  # heap of (sent_at, n, key)
        self._n = itertools.count()

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, key: Hashable, sent_at: float, now: float) -> str | None:
        """Accept (``None``, and remember ``key``) or refuse with a reason."""
        self._expire(now)
        if abs(sent_at - now) > self.window or sent_at <= self.floor:
            return "stale"
        if key in self._seen:
            return "replayed"
        if len(self._seen) >= self.capacity:
            if sent_at <= self._by_time[0][0]:
                return "stale"  # older than all we remember: forgetting one for it would not help
            old_at, _, old_key = heapq.heappop(self._by_time)
            del self._seen[old_key]
            self.floor = max(self.floor, old_at)
        self._seen[key] = sent_at
        heapq.heappush(self._by_time, (sent_at, next(self._n), key))
        return None

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        heap = self._by_time
        while heap and heap[0][0] < horizon:
            _, _, key = heapq.heappop(heap)
            del self._seen[key]
