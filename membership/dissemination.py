"""Piggybacked dissemination: the queue of membership facts waiting to be gossiped.

Each fact is retransmitted at most ``retransmit_limit(mult, n)`` times
(``mult * ceil(log10(n + 1))``, memberlist's ``retransmitLimit``); the least
transmitted facts go first, so new news spreads before old news.  A newer
fact about a member replaces the queued one (memberlist's invalidation by
name), so the queue holds at most one fact per member.
"""

from __future__ import annotations

import math
from typing import Callable

from .messages import Update


def retransmit_limit(mult: float, n: int) -> int:
    """How many times one fact is piggybacked, in a cluster of ``n`` members."""
    scale = math.ceil(math.log10(n + 1))
    return int(mult * scale)


def push_pull_scale(interval: float, n: int) -> float:
    """Anti-entropy period for ``n`` members: flat up to 32, then growing with
    log2(n) so the cluster's total push-pull load stays bounded (memberlist's
    ``pushPullScale``)."""
    threshold = 32
    if n <= threshold:
        return interval
    multiplier = math.ceil(math.log2(n) - math.log2(threshold)) + 1.0
    return interval * multiplier


class BroadcastQueue:
    """Facts to piggyback.  ``size_of`` gives an update's encoded size in bytes."""

    def __init__(self, size_of: Callable[[Update], int]) -> None:
        self._size_of = size_of
        # Invariant: each member id is in at most one bucket; bucket i holds the facts
        # transmitted i times, oldest first, as id -> (update, encoded size).
        self._buckets: list[dict[str, tuple[Update, int]]] = [{}]
        self._where: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._where)

    def push(self, update: Update) -> None:
        """Queue ``update``, replacing any queued fact about the same member."""
        old = self._where.pop(update.id, None)
        if old is not None:
            del self._buckets[old][update.id]
        self._buckets[0][update.id] = (update, self._size_of(update))
        self._where[update.id] = 0

    def get(self, budget: int, limit: int, first: Update | None = None) -> tuple[Update, ...]:
        """Pick facts that fit ``budget`` bytes, fewest transmits (then newest) first;
        count a transmit for each and drop those that reached ``limit``.
        ``first`` (if given) is sent before the queued facts, outside the queue."""
        out: list[Update] = []
        used = 0
        if first is not None:
            out.append(first)
            used += self._size_of(first)
        if not self._where:
            return tuple(out)
        picked: list[tuple[int, str, Update, int]] = []
        full = False
        for tx, bucket in enumerate(self._buckets):
            for mid in reversed(bucket):
                update, size = bucket[mid]
                if used + size > budget:
                    full = True
                    break
                used += size
                out.append(update)
                picked.append((tx, mid, update, size))
            if full:
                break
        for tx, mid, update, size in picked:
            del self._buckets[tx][mid]
            if tx + 1 >= limit:
                del self._where[mid]
                continue
            if tx + 1 == len(self._buckets):
                self._buckets.append({})
            self._buckets[tx + 1][mid] = (update, size)
            self._where[mid] = tx + 1
        return tuple(out)

    def pending(self) -> list[Update]:
        return [self._buckets[tx][mid][0] for mid, tx in self._where.items()]
