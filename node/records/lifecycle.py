"""The video lifecycle: every transition rule of the video record lives here.

    uploading -> uploaded -> processing -> ready
                             processing -> failed     (undecodable input, or attempts exhausted)
    any state -> deleted

The record (``videos/<id>/record.json``) is the commit point.  Functions here
are pure: they take the current record, who acts, and ``now``, and return the
next record or raise :class:`Refused`.  The caller writes the result by
compare-and-swap (storage.cas.update); a lost race re-reads and asks again, so
every rule is re-checked against the newest record.

Fencing: ``epoch`` increases by one on every claim, and a worker writes only
under ``out/<epoch>/``.  Renewal, commit and failure require the record's
epoch to still be the worker's, so a stale worker (its lease expired, or the
video handed off) can never commit.  Safety uses no clocks; ``now`` only
drives liveness (lease expiry, retry backoff).
"""

from __future__ import annotations

import copy
import math
import random
from typing import Any, Callable

Record = dict[str, Any]

UPLOADING, UPLOADED, PROCESSING, READY, FAILED, DELETED = (
    "uploading", "uploaded", "processing", "ready", "failed", "deleted")
STATES = (UPLOADING, UPLOADED, PROCESSING, READY, FAILED, DELETED)
TERMINAL = frozenset({READY, FAILED, DELETED})

# The whole transition table.  `processing -> processing` is a claim by a new epoch,
# a renewal, or a release for retry.
TRANSITIONS: dict[str, frozenset[str]] = {
    UPLOADING: frozenset({UPLOADED, DELETED}),
    UPLOADED: frozenset({PROCESSING, FAILED, DELETED}),
    PROCESSING: frozenset({PROCESSING, READY, FAILED, DELETED}),
    READY: frozenset({DELETED}),
    FAILED: frozenset({DELETED}),
    DELETED: frozenset(),
}

# Attempts are bounded two ways.  ``failures`` (attempts that released the lease after an
# infrastructure error) may reach ``max_attempts``.  ``takeovers`` (claims of a video whose
# holder died or stopped renewing, e.g. kill -9 mid-transcode) may reach
# ``TAKEOVER_FACTOR * max_attempts``: node deaths are not the video's fault, but a video that
# crashes every node that touches it must still end, as `failed`.
TAKEOVER_FACTOR = 3

HISTORY_LIMIT = 200  # Invariant: history is bounded; the first entry and the newest are kept


class Refused(Exception):
    """The transition is not allowed from the record as it is now (the reason says why)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def allowed(src: str, dst: str) -> bool:
    return dst in TRANSITIONS.get(src, frozenset())


def _transition(rec: Record, dst: str, node: str, now: float, **note: Any) -> Record:
    src = rec["state"]
    if not allowed(src, dst):
        raise Refused("wrong_state", f"video is {src}; cannot become {dst}")
    return with_history(rec, dst, node, now, HISTORY_LIMIT, note)


def with_history(doc: dict[str, Any], dst: str, node: str, now: float, limit: int,
                 note: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` (a video record or a chunk unit) in state ``dst``, its history one
    entry longer (who, when, which epoch, and the ``note`` entries that are not None) and
    at most ``limit`` long: the first entry and the newest are kept."""
    new = copy.deepcopy(doc)
    new["state"] = dst
    new["updated_at"] = now
    entry = {"state": dst, "at": now, "node": node, "epoch": new.get("epoch", 0)}
    entry.update({k: v for k, v in note.items() if v is not None})
    hist = new.setdefault("history", [])
    hist.append(entry)
    if len(hist) > limit:
        del hist[1:len(hist) - limit + 1]
    return new


def new_record(video_id: str, node: str, now: float, *, state: str, filename: str | None,
               size: int | None, **extra: Any) -> Record:
    """A fresh record: ``uploaded`` for one-shot uploads, ``uploading`` for resumable ones."""
    if state not in (UPLOADING, UPLOADED):
        raise ValueError(state)
    rec: Record = {
        "id": video_id, "state": state, "filename": filename, "size": size,
        "created_at": now, "updated_at": now, "error": None,
        "epoch": 0, "lease": None, "attempts": 0, "failures": 0, "takeovers": 0, "retry_at": None,
        "ready_epoch": None, "renditions": [],
        "history": [{"state": state, "at": now, "node": node, "epoch": 0}],
    }
    rec.update(extra)
    return rec


def mark_uploaded(rec: Record, node: str, now: float, *, size: int) -> Record:
    new = _transition(rec, UPLOADED, node, now)
    new["size"] = size
    return new


# ---- processing ---------------------------------------------------------------------------

def lease_expired(rec: Record, now: float) -> bool:
    lease = rec.get("lease")
    return lease is None or lease["expires"] <= now


def claimable(rec: Record, now: float, holder_alive: Callable[[str], bool] = lambda _: True
              ) -> tuple[bool, str]:
    """May some node claim this video now?  (Whether *this* node should is the ring's business.)"""
    state = rec["state"]
    if state == UPLOADED:
        return True, "uploaded"
    if state != PROCESSING:
        return False, f"state {state}"
    lease = rec.get("lease")
    if lease is None:
        if rec.get("retry_at") and rec["retry_at"] > now:
            return False, "backing off"
        return True, "released"
    return lease_verdict(lease, now, holder_alive)


def new_lease(node: str, now: float, lease_seconds: float) -> dict[str, Any]:
    """A lease written by a claim or a renewal: who, until when, and when it was last written."""
    return {"holder": node, "expires": now + lease_seconds, "renewed": now}


def lease_verdict(lease: dict, now: float, holder_alive: Callable[[str], bool]) -> tuple[bool, str]:
    """May a held lease (of a video or of a chunk unit) be taken over now, and why.

    Expired: yes.  Held by a node gossip calls dead: only once the holder has been silent in
    storage for half its lease (it renews every third), so a holder cut off from its peers but
    still reaching storage keeps its work (a partition where each side sees the other dead
    must not make them take the lease from each other in turn), while a dead holder's work is
    taken at most half a lease after its last renewal instead of a whole one.  A lease written
    before leases carried ``renewed`` counts as silent (the older rule)."""
    if lease["expires"] <= now:
        return True, "lease expired"
    if not holder_alive(lease["holder"]):
        renewed = lease.get("renewed")
        if renewed is not None and now - renewed < (lease["expires"] - renewed) / 2:
            return False, (f"held by {lease['holder']}: seen dead, but it renewed the lease "
                           f"{max(0.0, now - renewed):.1f} s ago")
        return True, "holder dead"
    return False, f"held by {lease['holder']}"


def claim(rec: Record, node: str, now: float, lease_seconds: float, *, max_attempts: int,
          holder_alive: Callable[[str], bool] = lambda _: True) -> Record:
    """Take the lease with the next epoch; or fail the video when attempts are exhausted."""
    ok, why = claimable(rec, now, holder_alive)
    if not ok:
        raise Refused("not_claimable", why)
    prev = rec.get("lease")
    failures, takeovers = rec.get("failures", 0), rec.get("takeovers", 0) + (prev is not None)
    if failures >= max_attempts or takeovers > TAKEOVER_FACTOR * max_attempts:
        last = (rec.get("error") or {}).get("message") or (
            f"{takeovers - 1} attempts ended with their node gone" if takeovers else "unknown error")
        return fail(rec, node, rec.get("epoch", 0), now, "attempts_exhausted",
                    f"gave up after {rec.get('attempts', 0)} attempts; last error: {last}", fenced=False)
    epoch = rec.get("epoch", 0) + 1
    new = copy.deepcopy(rec)
    new["epoch"] = epoch
    new = _transition(new, PROCESSING, node, now, reason=why,
                      took_over=prev["holder"] if prev and prev["holder"] != node else None)
    return take_lease(new, node, now, lease_seconds, takeovers)


def take_lease(new: dict[str, Any], node: str, now: float, lease_seconds: float, takeovers: int
               ) -> dict[str, Any]:
    """A claim's lease on ``new`` (a video record or a chunk unit, already transitioned to its
    next epoch): one more attempt, ``takeovers`` as counted, no retry pending."""
    new["lease"] = new_lease(node, now, lease_seconds)
    new["attempts"] = new.get("attempts", 0) + 1
    new["takeovers"] = takeovers
    new["retry_at"] = None
    return new


def _check_fence(rec: Record, node: str, epoch: int) -> None:
    if rec["state"] != PROCESSING:
        raise Refused("lost_lease", f"video is {rec['state']}")
    if rec.get("epoch") != epoch:
        raise Refused("lost_lease", f"epoch moved on to {rec.get('epoch')} (ours {epoch})")
    lease = rec.get("lease")
    if lease is None or lease["holder"] != node:
        raise Refused("lost_lease", "lease released or held by another node")


def renew(rec: Record, node: str, epoch: int, now: float, lease_seconds: float) -> Record:
    _check_fence(rec, node, epoch)
    new = copy.deepcopy(rec)
    new["lease"] = new_lease(node, now, lease_seconds)
    return new  # not a state change: no history entry


def attach_plan(rec: Record, node: str, epoch: int, plan: dict[str, Any]) -> Record:
    """Fix a chunked video's plan (node/chunks/plan.py) in the record, once.

    Only the holder of the current epoch may attach it, and only while none is attached: a
    successor owner reuses the plan it finds, so every chunk of a video is encoded alike and
    committed chunks stay valid across owner crashes.  Not a state change: no history entry."""
    _check_fence(rec, node, epoch)
    if rec.get("plan") is not None:
        raise Refused("plan_exists", f"the plan of epoch {rec['plan'].get('made_by_epoch')} is fixed")
    new = copy.deepcopy(rec)
    new["plan"] = plan
    return new


def note_chunks(rec: Record, node: str, epoch: int, now: float, lease_seconds: float,
                chunks: list[dict[str, Any]], progress: float) -> Record:
    """The owner's renewal of a chunked video: the lease, plus the summary of its chunks that
    ``GET /v1/videos/<id>`` shows (``chunks``, ``progress``).  Fenced like :func:`renew`."""
    new = renew(rec, node, epoch, now, lease_seconds)
    new["chunks"] = chunks
    new["progress"] = progress
    return new


def commit_ready(rec: Record, node: str, epoch: int, now: float,
                 renditions: list[dict[str, Any]], *, segments_from: dict[str, Any] | None = None,
                 chunks: list[dict[str, Any]] | None = None, poster: bool = False) -> Record:
    """The single commit that makes a video playable: only the current epoch may make it.

    ``poster``: a ``poster.jpg`` was stored with the outputs (node/process/poster.py).

    A chunked video's commit also names where its segments are (``segments_from``: each unit's
    committed epoch, read by ``layout.hls_object_key``) and keeps the final chunk summary."""
    _check_fence(rec, node, epoch)
    new = _transition(rec, READY, node, now)
    new["ready_epoch"] = epoch
    new["renditions"] = renditions
    new["progress"] = 1.0
    new["poster"] = poster
    if segments_from is not None:
        new["segments_from"] = segments_from
    if chunks is not None:
        new["chunks"] = chunks
    new["lease"] = None
    new["error"] = None
    return new


def fail(rec: Record, node: str, epoch: int, now: float, code: str, message: str, *,
         fenced: bool = True) -> Record:
    if fenced:
        _check_fence(rec, node, epoch)
    new = _transition(rec, FAILED, node, now, error=code)
    new["error"] = {"code": code, "message": message}
    new["lease"] = None
    return new


def release_for_retry(rec: Record, node: str, epoch: int, now: float, code: str, message: str,
                      *, delay: float) -> Record:
    """An infrastructure error: give the lease back and let anyone retry after ``delay``."""
    _check_fence(rec, node, epoch)
    return give_back(_transition(rec, PROCESSING, node, now, error=code, retry_in=round(delay, 3)),
                     now, code, message, delay=delay)


def give_back(new: dict[str, Any], now: float, code: str, message: str, *, delay: float
              ) -> dict[str, Any]:
    """The lease of ``new`` (a video record or a chunk unit, already transitioned) is given back
    after an infrastructure error: one more failure, retried by anyone after ``delay``."""
    new["lease"] = None
    new["retry_at"] = now + delay
    new["failures"] = new.get("failures", 0) + 1
    new["error"] = {"code": code, "message": message}
    return new


def delete(rec: Record, node: str, now: float) -> Record:
    if rec["state"] == DELETED:
        raise Refused("already_deleted", "video is already deleted")
    new = _transition(rec, DELETED, node, now)
    new["lease"] = None
    return new


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform in [0.5, 1] * min(cap, base * 2**(attempt-1))."""
    rng = rng or random.Random()
    ceiling = min(cap, base * math.pow(2, max(0, attempt - 1)))
    return ceiling * (0.5 + 0.5 * rng.random())


def public_view(rec: Record) -> dict[str, Any]:
    """The record as API.md shows it."""
    vid = rec["id"]
    out: dict[str, Any] = {
        "id": vid, "state": rec["state"], "filename": rec.get("filename"), "size": rec.get("size"),
        "created_at": rec.get("created_at"), "updated_at": rec.get("updated_at"),
        "error": rec.get("error"),
        "renditions": rec.get("renditions", []) if rec["state"] == READY else [],
        "owner": (rec.get("lease") or {}).get("holder"),
        "attempts": rec.get("attempts", 0),
        "epoch": rec.get("epoch", 0),
        "history": rec.get("history", []),
        "progress": 1.0 if rec["state"] == READY else rec.get("progress"),
        "chunks": rec.get("chunks", []),
    }
    if rec["state"] == READY:
        out["playback"] = {"hls": f"/v1/videos/{vid}/hls/master.m3u8",
                           "poster": f"/v1/videos/{vid}/poster.jpg" if rec.get("poster") else None}
    if rec.get("upload") and rec["state"] == UPLOADING:
        out["upload"] = {"offset": rec["upload"].get("offset", 0), "length": rec.get("size")}
    return out
