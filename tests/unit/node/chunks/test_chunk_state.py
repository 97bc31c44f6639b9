"""The chunk state machine: claim, renew, commit fenced by epoch, release, fail, takeover."""

from __future__ import annotations

import pytest

from node.chunks import state as cs
from node.records.lifecycle import Refused

LEASE = 10.0


def fresh(unit="00001"):
    return cs.new_chunk("v" * 26, unit, plan_epoch=1, now=0.0)


def claimed(node="n1", now=1.0, doc=None):
    return cs.claim(doc or fresh(), node, now, LEASE, max_attempts=3)


def test_the_transition_table_is_closed():
    for src, dsts in cs.TRANSITIONS.items():
        assert src in cs.STATES and dsts <= set(cs.STATES)
    assert cs.TRANSITIONS[cs.COMMITTED] == frozenset() == cs.TRANSITIONS[cs.FAILED]


def test_a_claim_takes_the_lease_with_the_next_epoch():
    doc = claimed()
    assert (doc["state"], doc["epoch"], doc["lease"], doc["attempts"]) == (
        cs.CLAIMED, 1, {"holder": "n1", "expires": 11.0, "renewed": 1.0}, 1)
    assert doc["history"][-1] == {"state": cs.CLAIMED, "at": 1.0, "node": "n1", "epoch": 1,
                                  "reason": "pending"}


@pytest.mark.parametrize("now, alive, ok, why", [
    (5.0, True, False, "held by n1"),
    # seen dead but wrote its lease 4 s ago (it renews every 10/3 s): not yet
    (5.0, False, False, "held by n1: seen dead, but it renewed the lease 4.0 s ago"),
    (6.0, False, True, "holder dead"),
    (11.0, True, True, "lease expired"),
])
def test_a_held_chunk_is_claimable_only_when_its_lease_expired_or_holder_died(now, alive, ok, why):
    assert cs.claimable(claimed(), now, lambda _: alive) == (ok, why)


def test_a_takeover_fences_the_old_holder_out():
    # given n1 holds epoch 1 and then dies; n2 takes the chunk
    old = claimed("n1")
    new = cs.claim(old, "n2", 6.0, LEASE, max_attempts=3, holder_alive=lambda _: False)
    assert new["epoch"] == 2 and new["takeovers"] == 1
    assert new["history"][-1]["lost"] == {"node": "n1", "epoch": 1}
    # when n1 (only paused) tries to commit or renew its epoch 1 against the newest document
    with pytest.raises(Refused, match="epoch moved on"):
        cs.commit(new, "n1", 1, 6.0, {"durations": [2.0]})
    with pytest.raises(Refused):
        cs.renew(new, "n1", 1, 6.0, LEASE)
    # then only n2's epoch commits, and the output names that epoch
    done = cs.commit(new, "n2", 2, 7.0, {"durations": [2.0, 2.0], "first_segment": 3})
    assert done["state"] == cs.COMMITTED and done["output"]["epoch"] == 2 and done["lease"] is None
    assert cs.committed_epochs([done]) == {"00001": 2}


def test_a_commit_happens_once():
    done = cs.commit(claimed(), "n1", 1, 2.0, {"durations": [2.0]})
    with pytest.raises(Refused):
        cs.commit(done, "n1", 1, 3.0, {"durations": [2.0]})
    with pytest.raises(Refused):
        cs.claim(done, "n2", 3.0, LEASE, max_attempts=3)


def test_a_commit_from_another_node_with_the_same_epoch_is_refused():
    with pytest.raises(Refused, match="another node"):
        cs.commit(claimed("n1"), "n2", 1, 2.0, {})


def test_renewal_extends_the_lease_and_keeps_progress_monotonic():
    doc = cs.renew(claimed(), "n1", 1, 4.0, LEASE, progress=0.5)
    assert doc["lease"]["expires"] == 14.0 and doc["progress"] == 0.5
    assert cs.renew(doc, "n1", 1, 5.0, LEASE, progress=0.3)["progress"] == 0.5
    assert len(doc["history"]) == 2  # not a state change


def test_release_backs_off_and_counts_a_failure_until_attempts_run_out():
    doc = fresh()
    for attempt in range(3):
        doc = cs.claim(doc, "n1", 10.0 * attempt + 1, LEASE, max_attempts=3)
        doc = cs.release(doc, "n1", doc["epoch"], 10.0 * attempt + 2, "storage_error", "down", delay=3.0)
        assert doc["state"] == cs.PENDING and doc["failures"] == attempt + 1
        assert cs.claimable(doc, 10.0 * attempt + 4) == (False, "backing off")
    # when the budget is spent, the next claim fails the chunk instead
    doc = cs.claim(doc, "n2", 100.0, LEASE, max_attempts=3)
    assert doc["state"] == cs.FAILED and doc["error"]["code"] == "attempts_exhausted"
    assert cs.first_failure([fresh("00000"), doc]) is doc


def test_an_undecodable_chunk_fails_at_once():
    doc = cs.fail(claimed(), "n1", 1, 2.0, "undecodable_input", "bad frame")
    assert doc["state"] == cs.FAILED and doc["failures"] == 0
    with pytest.raises(Refused):
        cs.fail(doc, "n1", 1, 3.0, "undecodable_input", "again")


def test_overall_progress_weights_units_by_duration_and_all_committed_needs_every_unit():
    a = cs.commit(claimed(doc=fresh("00000")), "n1", 1, 2.0, {})
    b = cs.renew(claimed(doc=fresh("00001")), "n1", 1, 2.0, LEASE, progress=0.5)
    weights = {"00000": 6.0, "00001": 2.0}
    assert cs.overall_progress([a, b], weights) == pytest.approx(7 / 8)
    assert not cs.all_committed([a, b], weights)
    b = cs.commit(b, "n1", 1, 3.0, {})
    assert cs.all_committed([a, b], weights)
    assert not cs.all_committed([a, b], [*weights, cs.AUDIO])


def test_history_is_bounded():
    doc = fresh()
    for i in range(200):
        doc = cs.claim(doc, f"n{i % 2}", float(i * 20), LEASE, max_attempts=1000)
    assert len(doc["history"]) == cs.HISTORY_LIMIT and doc["history"][0]["state"] == cs.PENDING


def test_unit_names_sort_in_time_order():
    assert [cs.unit_name(i) for i in (0, 9, 10)] == ["00000", "00009", "00010"]
    assert cs.unit_index("00012") == 12 and cs.unit_index(cs.AUDIO) is None
    with pytest.raises(ValueError):
        cs.unit_name(100_000)
