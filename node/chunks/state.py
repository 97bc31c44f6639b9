"""The chunk state machine: every transition rule of one unit of work of a chunked video.

    pending ──claim──► claimed(epoch, node, lease) ──commit(epoch)──► committed(epoch)
       ▲                 │  │  ▲
       └────release──────┘  │  └── claim by another node: lease expired or holder dead
                            │      (epoch+1; the old holder's commit is now refused: chunk_lost)
                            └────fail──► failed   (the chunk cannot be decoded, or attempts ran out)

A *unit* is one chunk of the video's time range (``unit = "00003"``) or, for a video with
audio, the audio track encoded once for the whole video (``unit = "audio"``): both are claimed,
leased, fenced and committed alike.  Each unit is its own small document in storage
(``videos/<id>/chunks/<unit>.json``), changed only by CAS (``node.chunks.store``), so three
nodes working on different chunks of one video never race on one key.

Functions here are pure: ``(doc, node, now, ...) -> doc`` or :class:`Refused` (the video
lifecycle's).  The caller writes the result by CAS; a lost race re-reads and asks again, so each
rule is re-checked against the newest document.

Fencing: ``epoch`` grows by one on every claim, and a holder writes outputs only under its own
epoch's prefix.  :func:`renew`, :func:`commit`, :func:`release` and :func:`fail` require the
document's epoch and holder to still be the caller's, so a holder that was paused, partitioned
or declared dead can never commit once another node claimed the unit; its outputs, under a
stale epoch, are never listed and are collected.  Clocks (``now``) decide only *when* a unit may
be taken (lease expiry, retry backoff), never *whether* a commit is valid.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from node.records.lifecycle import Refused, give_back, lease_verdict, new_lease, take_lease, with_history

ChunkDoc = dict[str, Any]

CHUNK_FORMAT = 1  # Invariant: a node leaves a chunk document of a newer format alone
PENDING, CLAIMED, COMMITTED, FAILED = "pending", "claimed", "committed", "failed"
STATES = (PENDING, CLAIMED, COMMITTED, FAILED)
DONE = frozenset({COMMITTED, FAILED})
AUDIO = "audio"  # the unit name of the audio rendition (encoded once for the whole video)

# The whole transition table.  `claimed -> claimed` is a takeover by a new epoch or a renewal.
TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({CLAIMED}),
    CLAIMED: frozenset({CLAIMED, PENDING, COMMITTED, FAILED}),
    COMMITTED: frozenset(),
    FAILED: frozenset(),
}
TAKEOVER_FACTOR = 3  # takeovers (holder died) may reach this * max_attempts, as for videos
HISTORY_LIMIT = 50  # Invariant: a chunk's history is bounded; the first entry and the newest kept


def unit_name(index: int) -> str:
    """The unit of chunk ``index``: five digits, so units sort in time order."""
    if not 0 <= index < 100_000:
        raise ValueError(f"chunk index {index} out of range")
    return f"{index:05d}"


def unit_index(unit: str) -> int | None:
    """The chunk index of a unit name, None for the audio unit."""
    return None if unit == AUDIO else int(unit)


def new_chunk(video: str, unit: str, plan_epoch: int, now: float) -> ChunkDoc:
    """A fresh unit, ``pending``.  ``plan_epoch``: the video epoch whose plan it belongs to."""
    return {
        "format": CHUNK_FORMAT, "video": video, "unit": unit, "plan_epoch": plan_epoch,
        "state": PENDING, "epoch": 0, "lease": None, "attempts": 0, "failures": 0,
        "takeovers": 0, "retry_at": None, "progress": 0.0, "output": None, "error": None,
        "created_at": now, "updated_at": now,
        "history": [{"state": PENDING, "at": now, "node": None, "epoch": 0}],
    }


def _transition(doc: ChunkDoc, dst: str, node: str, now: float, **note: Any) -> ChunkDoc:
    src = doc["state"]
    if dst not in TRANSITIONS.get(src, frozenset()):
        raise Refused("wrong_state", f"chunk {doc.get('unit')} is {src}; cannot become {dst}")
    return with_history(doc, dst, node, now, HISTORY_LIMIT, note)


def claimable(doc: ChunkDoc, now: float, holder_alive: Callable[[str], bool] = lambda _: True
              ) -> tuple[bool, str]:
    """May some node claim this unit now?  (Whether *this* node should: node.chunks.placement.)"""
    state = doc["state"]
    if state == PENDING:
        if doc.get("retry_at") and doc["retry_at"] > now:
            return False, "backing off"
        return True, "pending"
    if state != CLAIMED:
        return False, f"chunk {state}"
    return lease_verdict(doc["lease"], now, holder_alive)


def claim(doc: ChunkDoc, node: str, now: float, lease_seconds: float, *, max_attempts: int,
          holder_alive: Callable[[str], bool] = lambda _: True) -> ChunkDoc:
    """Take the unit's lease with the next epoch; or fail it when its attempts are exhausted.

    A claim of a unit another node held (lease expired or holder dead) records ``lost`` (the
    holder and its epoch) in the history entry: the ``chunk_lost`` log line names it."""
    ok, why = claimable(doc, now, holder_alive)
    if not ok:
        raise Refused("not_claimable", why)
    prev = doc.get("lease")
    failures = doc.get("failures", 0)
    takeovers = doc.get("takeovers", 0) + (prev is not None)
    if failures >= max_attempts or takeovers > TAKEOVER_FACTOR * max_attempts:
        last = (doc.get("error") or {}).get("message") or f"{takeovers - 1} holders gone"
        new = copy.deepcopy(doc)
        new["state"] = CLAIMED  # through claimed, so the table allows the step to failed
        return _fail(new, node, now, "attempts_exhausted",
                     f"chunk {doc['unit']} gave up after {doc.get('attempts', 0)} attempts; last error: {last}")
    new = copy.deepcopy(doc)
    new["epoch"] = doc["epoch"] + 1
    new = _transition(new, CLAIMED, node, now, reason=why,
                      lost=({"node": prev["holder"], "epoch": doc["epoch"]} if prev else None))
    new = take_lease(new, node, now, lease_seconds, takeovers)
    new["progress"] = 0.0
    return new


def _check_fence(doc: ChunkDoc, node: str, epoch: int) -> None:
    if doc["state"] != CLAIMED:
        raise Refused("lost_lease", f"chunk {doc.get('unit')} is {doc['state']}")
    if doc["epoch"] != epoch:
        raise Refused("lost_lease", f"chunk epoch moved on to {doc['epoch']} (ours {epoch})")
    lease = doc.get("lease")
    if lease is None or lease["holder"] != node:
        raise Refused("lost_lease", "chunk lease held by another node")


def renew(doc: ChunkDoc, node: str, epoch: int, now: float, lease_seconds: float, *,
          progress: float | None = None) -> ChunkDoc:
    """Extend the lease (and note the encoder's progress); not a state change, no history."""
    _check_fence(doc, node, epoch)
    new = copy.deepcopy(doc)
    new["lease"] = new_lease(node, now, lease_seconds)
    if progress is not None:
        new["progress"] = round(min(1.0, max(new.get("progress", 0.0), progress)), 4)
    return new


def commit(doc: ChunkDoc, node: str, epoch: int, now: float, output: Mapping[str, Any]) -> ChunkDoc:
    """The unit's outputs under ``epoch`` are complete: accepted only from the epoch's holder.

    ``output``: what the owner needs to stitch (``durations`` of its segments in order,
    ``first_segment``, ``bytes`` per rendition...).  Invariant: ``output.epoch == epoch``."""
    _check_fence(doc, node, epoch)
    new = _transition(doc, COMMITTED, node, now)
    new["output"] = dict(output, epoch=epoch)
    new["lease"] = None
    new["progress"] = 1.0
    new["error"] = None
    return new


def release(doc: ChunkDoc, node: str, epoch: int, now: float, code: str, message: str, *,
            delay: float) -> ChunkDoc:
    """An infrastructure error: give the unit back; anyone may retry after ``delay``."""
    _check_fence(doc, node, epoch)
    return give_back(_transition(doc, PENDING, node, now, error=code, retry_in=round(delay, 3)),
                     now, code, message, delay=delay)


def fail(doc: ChunkDoc, node: str, epoch: int, now: float, code: str, message: str) -> ChunkDoc:
    """The unit cannot be done (its range cannot be decoded): the video fails with it."""
    _check_fence(doc, node, epoch)
    return _fail(doc, node, now, code, message)


def _fail(doc: ChunkDoc, node: str, now: float, code: str, message: str) -> ChunkDoc:
    new = _transition(doc, FAILED, node, now, error=code)
    new["error"] = {"code": code, "message": message}
    new["lease"] = None
    return new


# ---- the video's view of its units ---------------------------------------------------------------

def overall_progress(docs: Iterable[Mapping[str, Any]], weights: Mapping[str, float]) -> float:
    """Progress of the whole video in [0, 1]: each unit's progress weighted by its ``weights``
    entry (its duration; units without a weight count 0)."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    done = sum(weights.get(d["unit"], 0.0) * (1.0 if d["state"] == COMMITTED else d.get("progress", 0.0))
               for d in docs)
    return round(min(1.0, done / total), 4)


def all_committed(docs: Iterable[Mapping[str, Any]], units: Iterable[str]) -> bool:
    """Every unit of the plan is committed (the owner may assemble and commit ``ready``)."""
    by_unit = {d["unit"]: d for d in docs}
    return all(u in by_unit and by_unit[u]["state"] == COMMITTED for u in units)


def first_failure(docs: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The failed unit that fails the video (lowest unit first), or None."""
    failed = sorted((d for d in docs if d["state"] == FAILED), key=lambda d: d["unit"])
    return failed[0] if failed else None


def committed_epochs(docs: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """unit -> the epoch whose outputs are listed.  Invariant: only these epochs are ever read."""
    return {d["unit"]: d["output"]["epoch"] for d in docs if d["state"] == COMMITTED}


def stale_epoch(doc: Mapping[str, Any], epoch: int) -> bool:
    """Can outputs written under ``epoch`` of this unit never be committed or served?

    Committed: every epoch but the committed one.  Claimed: every epoch before the holder's
    (those holders are fenced out).  Pending or failed: every epoch so far (each attempt was
    released, taken over or failed).  Such outputs are garbage: never listed, collected."""
    state = doc["state"]
    if state == COMMITTED:
        return epoch != doc["output"]["epoch"]
    if state == CLAIMED:
        return epoch < doc["epoch"]
    return epoch <= doc["epoch"]
