"""Local health (Lifeguard's Local Health Multiplier, memberlist's ``awareness.go``).

A node that is itself the problem (overloaded, paused, behind a lossy link)
misses acks and then accuses healthy members.  Lifeguard lets each node keep a
score of its *own* health, ``0`` (healthy) to ``max_score - 1``, and stretch its
probe timers by ``score + 1``: an unhealthy node probes less often and waits
longer, so it accuses less.

* ``health_after(score, delta, max_score)`` - the score after an event, clamped
  to ``[0, max_score - 1]`` (memberlist ``ApplyDelta``).
* ``scale_by_health(seconds, score)`` - ``seconds * (score + 1)`` (``ScaleTimeout``).

The events and their deltas (``PROBE_SUCCEEDED`` etc.) are those of memberlist's
``probeNode`` and ``refute``; we have no nacks, so a failed probe always counts
(memberlist's no-nack rule).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_HEALTH_MULTIPLIER = 8  # memberlist AwarenessMaxMultiplier: score in 0..7, timers up to 8x

PROBE_SUCCEEDED = -1  # any ack (direct, indirect or over the stream) within the interval
PROBE_FAILED = +1  # no ack at all: suspecting someone, we may be the one at fault
REFUTED = +1  # others suspected us: we were too slow to answer them


def health_after(score: int, delta: int, max_score: int = MAX_HEALTH_MULTIPLIER) -> int:
    """The health score after applying ``delta``: clamped to ``0 .. max_score - 1``."""
    return min(max(0, score + delta), max(0, max_score - 1))


def scale_by_health(seconds: float, score: int) -> float:
    """A probe timer stretched for a node whose health score is ``score``."""
    return seconds * (score + 1)


@dataclass
class Awareness:
    """One node's own health score.  Invariant: ``0 <= score < max_score``."""

    max_score: int = MAX_HEALTH_MULTIPLIER
    score: int = 0

    def apply(self, delta: int) -> bool:
        """Apply ``delta``; True if the score changed."""
        new = health_after(self.score, delta, self.max_score)
        changed, self.score = new != self.score, new
        return changed

    def scale(self, seconds: float) -> float:
        return scale_by_health(seconds, self.score)
