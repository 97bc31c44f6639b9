"""The consistent-hash ring: which node *should* work on a video, and who comes next.

A :class:`Ring` is immutable and built from the alive members of one node's view,
``{node_id: weight}``; a membership change builds a new one (:class:`RingView`, below, does that).

How hashring 1.5 (1.5.1, ``hashring/hashring.py``) works, and what we keep of it
--------------------------------------------------------------------------------
- **Points.** For a node it hashes ``f"{node}-{j}"`` with md5 for ``j in range(factor)``
  and uses three of the four little-endian 32-bit words of each digest as ring points:
  ``3 * factor`` points ("virtual nodes") per node.
- **Weights.** ``factor = floor(40 * len(nodes) * weight / total_weight)``: 40 with equal
  weights (120 points per node), but with unequal weights every node's factor depends on the
  *sum* of all weights.  A join or leave then changes the points of every survivor and moves
  keys *between survivors* (measured: ring ``{a: 1, b: 2}`` + ``c: 1`` moved ~5% of all keys
  between a and b, besides what c took).  ``floor`` also drops a node whose weight is below
  1/40 of the mean weight out of the ring altogether.
- **Lookup.** ``gen_key(key)`` is the first little-endian word of md5(key); the key belongs to
  the first point strictly greater (``bisect_right``), wrapping at 2**32.  No Python ``hash()``
  anywhere, so every process computes the same ring.
- **Successors.** ``iterate_nodes(key)`` walks clockwise from the key's point yielding each
  node once (distinct).  On an empty ring it yields ``(None, None)``.  It copies the tail of
  the point list on every call (``_sorted_keys[pos:]``) and then enumerates the whole list
  for the wrap-around: ~0.1 ms a call at 1,000 nodes, even for the first successor.
- **Collisions.** Points live in a dict ``{point: node}``; on a 32-bit collision the node
  placed later wins, so the order of the node list matters: we place in sorted id order.
- **No add/remove**: the whole circle is regenerated, ~0.1 s at 1,000 nodes in hashring.

We keep hashring's hash, point layout and lookup (``get_node``; ``iterate_nodes`` with the same
order but walking only as far as the caller reads, and nothing on an empty ring) and replace
the placement: a node's points depend on its own ``(id, weight)``, ``factor = replicas *
weight``, so a membership change moves only the keys of the node that joined or left, whatever
the weights.  With equal weights and ``replicas=40`` the circle is identical, point for point,
to ``HashRing(sorted(ids))``.  Each node's points are memoised (:func:`vnode_points`), so a
rebuild after one change hashes only the newcomer and the rest is one sort.

The view
--------
:class:`RingView` is this node's current ring, rebuilt whenever the alive membership changes.
Pure: no trio, no clock, no I/O.  The membership runtime calls :meth:`RingView.update` with
the alive members of its view, ``{node_id: weight}``, after every change it sees; the view
builds a new :class:`Ring` only when that mapping differs from the current one and
then tells its listeners ``(old, new)`` synchronously, in the order they were added.

Versions: the initial ring has version 0; each change (a member joins or leaves, or a weight
changes) gives the next ring ``version + 1``.  Versions are local to this view: compare rings
across nodes by ``digest``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from hashring import HashRing

from .errors import InvalidMember


#: md5 digests hashed per unit of weight; hashring's own constant, so equal-weight rings match
#: ``HashRing`` exactly.  bench/failover/ring_results.md has the figures behind keeping it.
DEFAULT_REPLICAS = 40
#: ring points per md5 digest: hashring uses words 0, 1 and 2 of the four in a digest.
POINTS_PER_REPLICA = 3
#: a weight above this would cost more than 100x a normal node's points to build.
MAX_WEIGHT = 100

_RING_SIZE = 2**32
_WORDS = struct.Struct("<III")  # hashring's _hash_val(b_key, lambda x: x + i * 4), i = 0, 1, 2


@functools.lru_cache(maxsize=4096)
def vnode_points(node_id: str, weight: int, replicas: int = DEFAULT_REPLICAS) -> tuple[int, ...]:
    """The ring points of one member: ``POINTS_PER_REPLICA * replicas * weight`` 32-bit ints.

    Pure and memoised: the same ``(node_id, weight, replicas)`` always gives the same points,
    which are exactly the points hashring places for ``node_id`` when its factor is
    ``replicas * weight``.
    """
    points: list[int] = []
    for j in range(replicas * weight):
        digest = hashlib.md5(f"{node_id}-{j}".encode()).digest()
        points.extend(_WORDS.unpack_from(digest))
    return tuple(points)


def _check_member(node_id: Any, weight: Any) -> None:
    if not isinstance(node_id, str) or not node_id:
        raise InvalidMember(f"member id must be a non-empty string, not {node_id!r}")
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
        raise InvalidMember(f"weight of {node_id!r} must be an int in [1, {MAX_WEIGHT}], "
                            f"not {weight!r}")


class _PlacedHashRing(HashRing):
    """hashring's lookup (get_node, iterate_nodes, gen_key) over a circle we placed."""

    def __init__(self, circle: dict[int, str], sorted_points: list[int],
                 weights: Mapping[str, int]) -> None:
        # Deliberately not calling HashRing.__init__: it would regenerate the circle with its
        # weight-normalised factor.  These are the four attributes its methods read.
        self.ring = circle
        self._sorted_keys = sorted_points
        self.nodes = list(weights)
        self.weights = dict(weights)

    def iterate_nodes(self, string_key: str, distinct: bool = True) -> Iterator[str]:
        """hashring's ``iterate_nodes``, same order, without its per-call copy of the circle.

        hashring 1.5 slices ``_sorted_keys[pos:]`` on every call and then enumerates the whole
        list again for the wrap-around: ~0.1 ms per call at 1,000 nodes even to read the first
        three successors.  This walks only as far as the caller reads.  Like hashring 1.5,
        which applies its distinct filter whatever ``distinct`` says, it yields each node once.
        """
        points, circle = self._sorted_keys, self.ring
        if not points:
            return
        start, count = self.get_node_pos(string_key), len(points)
        seen: set[str] = set()
        for i in range(start, start + count):
            node = circle[points[i % count]]
            if node not in seen:
                seen.add(node)
                yield node
                if len(seen) == len(self.nodes):
                    return


class Ring:
    """An immutable consistent-hash ring over ``{node_id: weight}`` of alive members.

    ``version`` is the caller's monotonic counter (RingView increments it per change);
    ``digest`` is a content hash: two nodes whose rings have the same digest place every video
    the same way.  Equality compares members, replicas and version.
    """

    def __init__(self, members: Mapping[str, int] | None = None, *, version: int = 0,
                 replicas: int = DEFAULT_REPLICAS) -> None:
        members = dict(members or {})
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise InvalidMember(f"replicas must be a positive int, not {replicas!r}")
        for node_id, weight in members.items():
            _check_member(node_id, weight)
        ordered = dict(sorted(members.items()))
        circle: dict[int, str] = {}
        # Invariant: placement in sorted id order, so a point two nodes share goes to the same
        # node in every process.
        for node_id, weight in ordered.items():
            for point in vnode_points(node_id, weight, replicas):
                circle[point] = node_id
        self._members: Mapping[str, int] = MappingProxyType(ordered)
        self._version = version
        self._replicas = replicas
        self._hr = _PlacedHashRing(circle, sorted(circle), ordered)
        self._digest = hashlib.sha256(
            json.dumps([replicas, list(ordered.items())], separators=(",", ":")).encode()
        ).hexdigest()[:16]
        self._vnodes_of: Mapping[str, int] | None = None
        self._shares: Mapping[str, float] | None = None

    # -- what it is -------------------------------------------------------------------------

    @property
    def members(self) -> Mapping[str, int]:
        """``{node_id: weight}``, read-only, in id order."""
        return self._members

    @property
    def version(self) -> int:
        return self._version

    @property
    def replicas(self) -> int:
        return self._replicas

    @property
    def digest(self) -> str:
        """16 hex digits of sha256 over (replicas, members): equal digests, equal placement."""
        return self._digest

    @property
    def vnodes(self) -> int:
        """Number of points (virtual nodes) on the circle, all members together."""
        return len(self._hr._sorted_keys)

    def vnodes_of(self, node_id: str) -> int:
        """Points held by ``node_id`` (0 if not a member); less than its quota only when a
        32-bit point collided with a node placed later."""
        if self._vnodes_of is None:
            self._vnodes_of = MappingProxyType(Counter(self._hr.ring.values()))
        return self._vnodes_of.get(node_id, 0)

    def shares(self) -> Mapping[str, float]:
        """Fraction of the hash space each member owns (sums to 1.0 for a non-empty ring)."""
        if self._shares is None:
            owned: dict[str, int] = dict.fromkeys(self._members, 0)
            points, circle = self._hr._sorted_keys, self._hr.ring
            if points:
                previous = points[-1] - _RING_SIZE
                for point in points:
                    owned[circle[point]] += point - previous
                    previous = point
            self._shares = MappingProxyType({n: a / _RING_SIZE for n, a in owned.items()})
        return self._shares

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._members

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ring):
            return NotImplemented
        return (self._digest, self._version) == (other._digest, other._version)

    def __hash__(self) -> int:
        return hash((self._digest, self._version))

    def __repr__(self) -> str:
        return (f"Ring(version={self._version}, members={len(self._members)}, "
                f"vnodes={self.vnodes}, digest={self._digest})")

    # -- placement ----------------------------------------------------------------------------

    def owner(self, video_id: str) -> str | None:
        """The node that should process and cache ``video_id``; None on an empty ring."""
        if not self._members:
            return None
        return self._hr.get_node(video_id)

    def iter_preference(self, video_id: str) -> Iterator[str]:
        """Distinct members in handoff order, owner first; lazy (stop early to save work)."""
        if not self._members:
            return iter(())
        return self._hr.iterate_nodes(video_id)

    def preference(self, video_id: str, n: int | None = None) -> list[str]:
        """The first ``n`` (default: all) distinct members in handoff order, owner first."""
        limit = len(self._members) if n is None else max(0, min(n, len(self._members)))
        result: list[str] = []
        if limit == 0:
            return result
        for node_id in self.iter_preference(video_id):
            result.append(node_id)
            if len(result) == limit:
                break
        return result

    def to_dict(self) -> dict[str, Any]:
        """The body of ``GET /v1/cluster/ring``."""
        shares = self.shares()
        return {
            "version": self._version,
            "digest": self._digest,
            "replicas": self._replicas,
            "points_per_weight": POINTS_PER_REPLICA * self._replicas,
            "vnodes": self.vnodes,
            "members": [
                {"id": node_id, "weight": weight, "vnodes": self.vnodes_of(node_id),
                 "share": round(shares[node_id], 6)}
                for node_id, weight in self._members.items()
            ],
        }


# ---- the view: this node's current ring ----------------------------------------------------------

RingListener = Callable[[Ring, Ring], None]


@dataclass(frozen=True)
class RingViewStatistics:
    version: int
    members: int
    vnodes: int
    digest: str
    updates: int  # calls to update()
    changes: int  # updates that built a new ring


class RingView:
    """Holds the current :class:`Ring` and rebuilds it on membership change."""

    def __init__(self, alive: Mapping[str, int] | None = None, *,
                 replicas: int = DEFAULT_REPLICAS) -> None:
        self._replicas = replicas
        self._ring = Ring(alive or {}, version=0, replicas=replicas)
        self._listeners: list[RingListener] = []
        self._updates = 0
        self._changes = 0

    @property
    def ring(self) -> Ring:
        """The current ring; a new object after every change, never mutated."""
        return self._ring

    def update(self, alive: Mapping[str, int]) -> bool:
        """Adopt ``alive`` as the membership; True when the ring changed.

        Raises :class:`~ring.errors.InvalidMember` (and keeps the current ring) for a bad id
        or weight.  When the ring changed, every listener is called with ``(old, new)``, even
        if an earlier one raised; their exceptions are raised afterwards as one
        ``ExceptionGroup``, with the new ring already in place.
        """
        self._updates += 1
        alive = dict(alive)
        if alive == dict(self._ring.members):
            return False
        old = self._ring
        new = Ring(alive, version=old.version + 1, replicas=self._replicas)
        self._ring = new
        self._changes += 1
        errors: list[Exception] = []
        for listener in list(self._listeners):
            try:
                listener(old, new)
            except Exception as exc:  # noqa: BLE001 - re-raised below as a group
                errors.append(exc)
        if errors:
            raise ExceptionGroup("ring listener(s) failed", errors)
        return True

    def add_listener(self, listener: RingListener) -> None:
        """Call ``listener(old, new)`` after each change (a listener added twice runs twice)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: RingListener) -> None:
        """Stop calling ``listener``; ValueError if it was not added."""
        self._listeners.remove(listener)

    def statistics(self) -> RingViewStatistics:
        ring = self._ring
        return RingViewStatistics(version=ring.version, members=len(ring), vnodes=ring.vnodes,
                                  digest=ring.digest, updates=self._updates,
                                  changes=self._changes)
