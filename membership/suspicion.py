"""Suspicion: how long a suspected member has to refute before it is declared dead.

The formulas follow Lifeguard as memberlist implements it (``suspicion.go``):

* ``suspicion_timeout(mult, n, interval) = mult * max(1, log10(max(1, n))) * interval``
  is the *minimum* time; the maximum is ``max_mult`` times that.
* A fresh suspicion starts at the maximum; each *independent* confirmation
  (another member suspecting the same incarnation) shrinks it logarithmically
  towards the minimum, reached after ``k`` confirmations
  (``remaining_suspicion_time``).  ``k = mult - 2`` as in memberlist, 0 when
  the cluster is too small for that many independent confirmers.

``Suspicion`` tracks one suspected member: its start time, its confirmers and
its deadline.  Time is whatever clock the caller uses (seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def suspicion_timeout(mult: float, n: int, interval: float) -> float:
    """Minimum suspicion timeout in seconds for a cluster of ``n`` members."""
    scale = max(1.0, math.log10(max(1, n)))
    return mult * scale * interval


def expected_confirmations(mult: float, n: int) -> int:
    """How many independent confirmations shrink a suspicion to its minimum (``k``)."""
    k = int(mult) - 2
    # Leave out the suspected member and ourselves: too few others to ever confirm.
    if n - 2 < k:
        k = 0
    return max(0, k)


def remaining_suspicion_time(confirmations: int, k: int, elapsed: float,
                             min_timeout: float, max_timeout: float) -> float:
    """Seconds left before a suspicion with ``confirmations`` independent
    confirmations (of ``k`` expected) expires, ``elapsed`` seconds after it began.

    Negative once overdue.  Timeouts are floored to whole milliseconds as in memberlist.
    """
    if k <= 0:
        frac = 1.0
    else:
        frac = math.log(confirmations + 1.0) / math.log(k + 1.0)
    raw = max_timeout - frac * (max_timeout - min_timeout)
    timeout = math.floor(raw * 1000.0) / 1000.0
    if timeout < min_timeout:
        timeout = min_timeout
    return timeout - elapsed


@dataclass
class Suspicion:
    """One member under suspicion.  Invariant: ``origin`` is in ``confirmers``."""

    incarnation: int
    start: float
    min_timeout: float
    max_timeout: float
    k: int
    origin: str
    confirmers: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.confirmers.add(self.origin)

    @property
    def confirmations(self) -> int:
        return len(self.confirmers) - 1

    def confirm(self, origin: str) -> bool:
        """Count ``origin``'s suspicion; True if it is new (and so shortens the deadline)."""
        if self.confirmations >= self.k or origin in self.confirmers:
            return False
        self.confirmers.add(origin)
        return True

    def deadline(self) -> float:
        """When the suspected member is to be declared dead, absent a refutation."""
        return self.start + remaining_suspicion_time(
            self.confirmations, self.k, 0.0, self.min_timeout, self.max_timeout)
