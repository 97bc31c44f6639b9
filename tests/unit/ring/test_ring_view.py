"""Pure tests of ring.RingView: rebuild on membership change, versions, listeners."""

from __future__ import annotations

import pytest

from ring import InvalidMember, Ring, RingView


def test_starts_empty_at_version_zero():
    view = RingView()
    assert view.ring.version == 0 and len(view.ring) == 0 and view.ring.owner("v") is None


def test_initial_members():
    view = RingView({"n1": 1, "n2": 1})
    assert view.ring.version == 0
    assert dict(view.ring.members) == {"n1": 1, "n2": 1}


def test_version_increments_only_when_membership_changes():
    view = RingView()
    steps = [
        ({"n1": 1}, True, 1),
        ({"n1": 1}, False, 1),              # same set: no rebuild
        ({"n1": 1, "n2": 1}, True, 2),      # join
        ({"n2": 1, "n1": 1}, False, 2),     # order does not matter
        ({"n1": 1, "n2": 2}, True, 3),      # a weight change moves keys: new ring
        ({"n2": 2}, True, 4),               # leave
        ({}, True, 5),                      # everyone gone
    ]
    for alive, changed, version in steps:
        ring_before = view.ring
        assert view.update(alive) is changed
        assert view.ring.version == version
        assert (view.ring is ring_before) is (not changed)
        assert dict(view.ring.members) == alive
    stats = view.statistics()
    assert (stats.updates, stats.changes, stats.version) == (7, 5, 5)
    assert stats.members == 0 and stats.vnodes == 0 and stats.digest == view.ring.digest


def test_listeners_get_old_and_new_ring_in_order():
    view = RingView({"n1": 1})
    calls: list[tuple[str, int, int]] = []
    first = lambda old, new: calls.append(("first", old.version, new.version))  # noqa: E731
    second = lambda old, new: calls.append(("second", old.version, new.version))  # noqa: E731
    view.add_listener(first)
    view.add_listener(second)
    view.update({"n1": 1})                      # no change: nobody called
    view.update({"n1": 1, "n2": 1})
    assert calls == [("first", 0, 1), ("second", 0, 1)]
    view.remove_listener(first)
    view.update({"n2": 1})
    assert calls[2:] == [("second", 1, 2)]
    with pytest.raises(ValueError):
        view.remove_listener(first)


def test_listener_errors_do_not_stop_other_listeners():
    view = RingView()
    seen: list[Ring] = []

    def broken(old: Ring, new: Ring) -> None:
        raise RuntimeError("listener bug")

    view.add_listener(broken)
    view.add_listener(lambda old, new: seen.append(new))
    with pytest.raises(ExceptionGroup) as info:
        view.update({"n1": 1})
    assert [type(e) for e in info.value.exceptions] == [RuntimeError]
    assert seen == [view.ring] and view.ring.version == 1   # new ring in place anyway


def test_invalid_update_keeps_the_current_ring():
    view = RingView({"n1": 1})
    ring = view.ring
    with pytest.raises(InvalidMember):
        view.update({"n1": 1, "n2": 0})
    assert view.ring is ring


def test_replicas_carry_over_to_every_rebuild():
    view = RingView({"n1": 1}, replicas=10)
    view.update({"n1": 1, "n2": 1})
    assert view.ring.replicas == 10 and view.ring.vnodes == 2 * 10 * 3


def test_views_fed_the_same_membership_agree_on_placement():
    # two nodes whose views saw different histories but end with the same members agree
    a, b = RingView(), RingView()
    for alive in ({"n1": 1}, {"n1": 1, "n2": 1}, {"n1": 1, "n2": 1, "n3": 1}):
        a.update(alive)
    b.update({"n3": 1, "n2": 1, "n1": 1})
    assert a.ring.version != b.ring.version
    assert a.ring.digest == b.ring.digest
    assert all(a.ring.preference(f"v{i}") == b.ring.preference(f"v{i}") for i in range(300))
