"""Table tests of the named formulas (suspicion, retransmits, push-pull scale, join backoff)."""

from __future__ import annotations

import pytest

from membership.dissemination import BroadcastQueue, push_pull_scale, retransmit_limit
from membership.join import join_backoff
from membership.messages import ALIVE, Update
from membership.suspicion import (Suspicion, expected_confirmations, remaining_suspicion_time,
                                  suspicion_timeout)


@pytest.mark.parametrize("mult,n,interval,expected", [
    (4, 1, 1.0, 4.0), (4, 5, 1.0, 4.0),  # log10 floored at 1
    (4, 10, 1.0, 4.0), (4, 100, 1.0, 8.0), (4, 1000, 1.0, 12.0), (4, 1000, 0.3, 3.6), (5, 1, 0.2, 1.0),
])
def test_suspicion_timeout(mult, n, interval, expected):
    assert suspicion_timeout(mult, n, interval) == pytest.approx(expected)


# memberlist suspicion_test.go TestSuspicion_remainingSuspicionTime
@pytest.mark.parametrize("n,k,elapsed,lo,hi,expected", [
    (0, 3, 0, 2, 30, 30), (1, 3, 2, 2, 30, 14), (2, 3, 3, 2, 30, 4.810),
    (3, 3, 4, 2, 30, -2), (4, 3, 5, 2, 30, -3), (5, 3, 10, 2, 30, -8),
])
def test_remaining_suspicion_time_matches_memberlist(n, k, elapsed, lo, hi, expected):
    assert remaining_suspicion_time(n, k, elapsed, lo, hi) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("mult,n,expected", [(4, 1, 0), (4, 3, 0), (4, 4, 2), (4, 50, 2),
                                             (6, 50, 4), (2, 50, 0)])
def test_expected_confirmations(mult, n, expected):
    assert expected_confirmations(mult, n) == expected


def test_suspicion_deadline_shrinks_with_independent_confirmations_only():
    s = Suspicion(incarnation=1, start=10.0, min_timeout=2.0, max_timeout=30.0, k=3, origin="a")
    assert s.deadline() == pytest.approx(40.0)
    assert s.confirm("a") is False  # the origin again does not count
    assert s.confirm("b") is True
    assert s.deadline() == pytest.approx(26.0)
    assert s.confirm("c") and s.confirm("d")
    assert s.deadline() == pytest.approx(12.0)
    assert s.confirm("e") is False  # k reached


@pytest.mark.parametrize("mult,n,expected", [(4, 1, 4), (4, 9, 4), (4, 10, 8), (4, 99, 8),
                                             (4, 100, 12), (4, 1000, 16), (3, 50, 6)])
def test_retransmit_limit(mult, n, expected):
    assert retransmit_limit(mult, n) == expected


@pytest.mark.parametrize("n,expected", [(1, 30), (32, 30), (33, 60), (64, 60), (65, 90),
                                        (1000, 180)])
def test_push_pull_scale(n, expected):
    assert push_pull_scale(30.0, n) == pytest.approx(expected)


@pytest.mark.parametrize("attempt,u,expected", [(1, 0.0, 0.5), (1, 0.999, 0.9995), (2, 0.0, 1.0),
                                                (3, 0.5, 3.0), (10, 0.0, 5.0), (10, 1.0, 10.0)])
def test_join_backoff(attempt, u, expected):
    assert join_backoff(attempt, 1.0, 10.0, u) == pytest.approx(expected)


def _u(i: int) -> Update:
    return Update(ALIVE, f"m{i}", 1, f"10.0.0.{i}:7946", f"10.0.0.{i}:8000")


def test_queue_sends_fewest_transmitted_newest_first_and_retires_at_limit():
    q = BroadcastQueue(lambda u: 10)
    for i in range(3):
        q.push(_u(i))
    assert [u.id for u in q.get(budget=20, limit=2)] == ["m2", "m1"]
    # m0 was never sent: it goes first; m1 reaches the limit and retires
    assert [u.id for u in q.get(budget=20, limit=2)] == ["m0", "m1"]
    assert [u.id for u in q.get(budget=100, limit=2)] == ["m0", "m2"]
    assert len(q) == 0


def test_queue_replaces_facts_about_the_same_member():
    q = BroadcastQueue(lambda u: 10)
    q.push(_u(1))
    newer = Update("suspect", "m1", 1, origin="x")
    q.push(newer)
    assert q.pending() == [newer]
    assert q.get(budget=100, limit=5, first=_u(9)) == (_u(9), newer)
