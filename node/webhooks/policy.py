"""What to do with one outbox entry, as pure functions of the entry, the record and ``now``.

    plan(entry, record, now, grace)       -> WAIT | DELIVER | DROP
    retry_delay(round, base, cap, rng)    -> seconds before the next round
    after_round(entry, outcomes, ...)     -> RoundResult(DONE | RETRY | DEAD, the entry to keep)

An entry is delivered only once its transition committed (``outbox.committed``); one whose
transition did not commit within ``grace`` seconds of its (last) writing is dropped: the
writer crashed before its CAS, or lost the race to another transition.  A round POSTs the event
to every configured URL that has not answered 2xx yet; after ``max_attempts`` rounds with a
failure the entry is dead.  Invariant: ``attempts`` only grows and ``delivered`` only gains URLs,
so a round never re-sends to a URL that took the event (at-least-once is per URL).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import Enum
from typing import Any, Sequence

from node.records import outbox
from node.records.lifecycle import Record


class Action(str, Enum):
    WAIT = "wait"  # not due yet, or its transition may still commit
    DELIVER = "deliver"
    DROP = "drop"  # its transition never committed


class Verdict(str, Enum):
    DONE = "done"  # every URL took it: remove the entry
    RETRY = "retry"  # keep it with the next round's time
    DEAD = "dead"  # rounds exhausted: move to webhooks/dead/


@dataclass(frozen=True)
class Outcome:
    url: str
    status: int | None  # the HTTP status, None when no answer came
    error: str | None = None  # why there was no answer (timeout, refused, ...)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class RoundResult:
    verdict: Verdict
    entry: dict[str, Any]  # the entry as it should be stored (for DEAD: as the dead letter)


def plan(entry: dict[str, Any], rec: Record | None, now: float, grace: float) -> Action:
    next_at = entry.get("next_at")
    if next_at is not None and now < next_at:
        return Action.WAIT
    if outbox.committed(entry, rec):
        return Action.DELIVER
    if now - float(entry.get("written_at") or 0.0) >= grace:
        return Action.DROP
    return Action.WAIT


def retry_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """After round ``attempt`` (1, 2, ...) failed: uniform in [0.5, 1] * min(cap, base * 2^(attempt-1))."""
    ceiling = min(cap, base * math.pow(2, max(0, attempt - 1)))
    return ceiling * (0.5 + 0.5 * rng.random())


def pending_urls(entry: dict[str, Any], urls: Sequence[str]) -> list[str]:
    done = set(entry.get("delivered") or ())
    return [u for u in urls if u not in done]


def after_round(entry: dict[str, Any], outcomes: Sequence[Outcome], urls: Sequence[str], *,
                now: float, max_attempts: int, base: float, cap: float,
                rng: random.Random) -> RoundResult:
    attempt = int(entry.get("attempts", 0)) + 1
    delivered = list(entry.get("delivered") or ())
    delivered += [o.url for o in outcomes if o.ok and o.url not in delivered]
    failed = [o for o in outcomes if not o.ok]
    new = {**entry, "attempts": attempt, "delivered": delivered}
    if not pending_urls(new, urls):
        return RoundResult(Verdict.DONE, new)
    last = failed[-1] if failed else None
    new["last"] = {"at": now, "url": last.url, "status": last.status, "error": last.error} if last else None
    if attempt >= max_attempts:
        new["dead_at"] = now
        new["next_at"] = None
        return RoundResult(Verdict.DEAD, new)
    new["next_at"] = now + retry_delay(attempt, base, cap, rng)
    return RoundResult(Verdict.RETRY, new)
