"""The webhook outbox: one small document in storage per video event, written with the transition.

    webhooks/outbox/<video id>/<event id>   an event still to deliver (node.webhooks delivers it)
    webhooks/dead/<video id>/<event id>     an event given up after ``webhooks.max_attempts``

Events are the transitions into ``uploaded``, ``ready``, ``failed`` and ``deleted``.  Each
happens at most once per (video, epoch) (lifecycle.TRANSITIONS: these states are entered once
per epoch), so :func:`event_id` of (video, event, epoch) names one event for good: writing it
twice, or delivering it twice, is the same event.

Invariant (no lost event): :class:`VideoStore <node.records.store.VideoStore>` writes the entry
*before* the CAS that commits the transition (an intent naming the expected state and epoch) and
once more right *after* it (create-if-absent, so the usual case costs one 412).  A crash between
the two leaves the entry in storage; a crash before the first leaves no committed transition.
The deliverer sends an entry only once the record shows the transition (:func:`committed`), and
drops an entry whose transition never committed after ``webhooks.intent_grace``.

Pure helpers (``event_id``, ``event_of``, ``committed``, ``new_entry``) do no I/O; :class:`Outbox`
does the two writes.  Imports: ``storage`` and ``node.log`` only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

import storage
from storage import cas

from node import log
from node.records import layout, lifecycle
from node.records.lifecycle import Record

FORMAT = 1  # the entry's format number (DESIGN "Record formats and mixed versions")
EVENTS = (lifecycle.UPLOADED, lifecycle.READY, lifecycle.FAILED, lifecycle.DELETED)
OUTBOX_PREFIX = "webhooks/outbox/"
DEAD_PREFIX = "webhooks/dead/"


def event_id(video: str, event: str, epoch: int) -> str:
    """The stable id of one event: 32 hex digits of sha256 over (video, event, epoch).

    A re-emitted or re-sent event has the same id, so receivers drop duplicates by it."""
    return hashlib.sha256(f"shoal-event\n{video}\n{event}\n{int(epoch)}".encode()).hexdigest()[:32]


def outbox_key(video: str, eid: str) -> str:
    return f"{OUTBOX_PREFIX}{video}/{eid}"


def dead_key(video: str, eid: str) -> str:
    return f"{DEAD_PREFIX}{video}/{eid}"


def video_of_key(key: str) -> str | None:
    """The video id an outbox or dead-letter key names; None for a key that is not one."""
    for prefix in (OUTBOX_PREFIX, DEAD_PREFIX):
        if key.startswith(prefix):
            parts = key[len(prefix):].split("/")
            if len(parts) == 2 and layout.valid_id(parts[0]):
                return parts[0]
    return None


@dataclass(frozen=True)
class Event:
    video: str
    event: str  # one of EVENTS (the state the video entered)
    epoch: int
    at: float  # when the transition was decided (the record's updated_at)

    @property
    def id(self) -> str:
        return event_id(self.video, self.event, self.epoch)


def event_of(old: Record | None, new: Record) -> Event | None:
    """The event a transition ``old -> new`` emits, or None (``old`` None: a new record)."""
    state = new["state"]
    if state not in EVENTS or (old is not None and old["state"] == state):
        return None
    return Event(new["id"], state, int(new.get("epoch", 0)), float(new.get("updated_at") or 0.0))


def new_entry(ev: Event, now: float) -> dict[str, Any]:
    """The outbox document of ``ev``, written at ``now`` (before its transition commits)."""
    return {"format": FORMAT, "id": ev.id, "video": ev.video, "event": ev.event,
            "state": ev.event, "epoch": ev.epoch, "time": ev.at, "written_at": now,
            "attempts": 0, "next_at": None, "delivered": [], "last": None}


def committed(entry: dict[str, Any], rec: Record | None) -> bool:
    """Did the transition ``entry`` announces commit?  (Its state at its epoch is in the history.)

    ``uploaded`` also counts as committed once the video went on to be processed, in case a very
    long history dropped the entry (lifecycle.HISTORY_LIMIT keeps the first and the newest).
    """
    if rec is None:
        return False
    state, epoch = entry["state"], entry["epoch"]
    if any(h.get("state") == state and h.get("epoch", 0) == epoch for h in rec.get("history", [])):
        return True
    return state == lifecycle.UPLOADED and rec["state"] in (
        lifecycle.PROCESSING, lifecycle.READY, lifecycle.FAILED)


class Outbox:
    """Writes outbox entries for :class:`node.records.store.VideoStore` (see the invariant above).

    ``refresh_after``: an entry already there and older than this many seconds gets a new
    ``written_at`` when its transition is tried again (a retried DELETE, say), so the deliverer's
    grace for uncommitted entries counts from the newest try.
    """

    def __init__(self, store: storage.ObjectStore, *, refresh_after: float = 60.0,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.refresh_after = refresh_after
        self.clock = clock

    async def write(self, ev: Event) -> None:
        """Create the entry if absent (one PUT); refresh an old one.  Idempotent."""
        key = outbox_key(ev.video, ev.id)
        now = self.clock()
        try:
            await cas.create(self.store, key, new_entry(ev, now))
            log.debug("webhook_queued", video=ev.video, epoch=ev.epoch, webhook=ev.event, id=ev.id)
            return
        except storage.PreconditionFailed:
            pass

        def refresh(doc: dict[str, Any] | None) -> dict[str, Any] | storage.Keep:
            if doc is None:
                return new_entry(ev, now)
            if now - float(doc.get("written_at") or 0.0) < self.refresh_after:
                return storage.Keep("fresh")
            return {**doc, "written_at": now}

        await cas.update(self.store, key, refresh)
