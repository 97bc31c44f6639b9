"""Joining through seeds: the retry schedule.

``join_backoff(attempt, base, cap, u)``: seconds to wait after ``attempt``
failed rounds over all seeds: exponential from ``base``, capped at ``cap``,
with "equal jitter" from ``u`` in [0, 1) so that nodes started together do
not retry in lockstep.  Pure; the runtime passes ``random.random()``.
"""

from __future__ import annotations


def join_backoff(attempt: int, base: float, cap: float, u: float) -> float:
    """Delay before join round ``attempt + 1`` (``attempt`` >= 1)."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return ceiling / 2 + (ceiling / 2) * u
