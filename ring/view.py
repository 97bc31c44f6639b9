"""RingView: this node's current ring, rebuilt whenever the alive membership changes.

Pure: no trio, no clock, no I/O.  The membership runtime calls :meth:`RingView.update` with
the alive members of its view, ``{node_id: weight}``, after every change it sees; the view
builds a new :class:`~ring.ring.Ring` only when that mapping differs from the current one and
then tells its listeners ``(old, new)`` synchronously, in the order they were added.

Versions: the initial ring has version 0; each change (a member joins or leaves, or a weight
changes) gives the next ring ``version + 1``.  Versions are local to this view: compare rings
across nodes by ``digest``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .ring import DEFAULT_REPLICAS, Ring

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
