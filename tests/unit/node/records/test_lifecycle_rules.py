"""The video lifecycle as a pure state machine: transitions, fencing, leases, retries.

No I/O: time is a number passed in.
"""

import random

import pytest

from node.records import lifecycle as lc
from node.records.lifecycle import Refused

LEASE = 10.0


def uploaded(now=0.0):
    return lc.new_record("v" * 26, "n1", now, state=lc.UPLOADED, filename="a.mp4", size=10)


def test_transition_table_is_closed_and_terminal_states_only_delete():
    for src, dsts in lc.TRANSITIONS.items():
        assert src in lc.STATES
        assert dsts <= set(lc.STATES)
    assert lc.TRANSITIONS[lc.READY] == {lc.DELETED}
    assert lc.TRANSITIONS[lc.FAILED] == {lc.DELETED}
    assert lc.TRANSITIONS[lc.DELETED] == frozenset()
    assert not lc.allowed(lc.UPLOADING, lc.PROCESSING)  # never process a partial upload


def test_claim_increments_epoch_and_attempts_and_records_history():
    rec = lc.claim(uploaded(), "n2", 1.0, LEASE, max_attempts=3)
    assert rec["state"] == lc.PROCESSING
    assert rec["epoch"] == 1 and rec["attempts"] == 1
    assert rec["lease"] == {"holder": "n2", "expires": 11.0, "renewed": 1.0}
    assert rec["history"][-1] == {"state": "processing", "at": 1.0, "node": "n2", "epoch": 1,
                                  "reason": "uploaded"}


def test_a_live_lease_cannot_be_claimed_but_an_expired_one_can():
    rec = lc.claim(uploaded(), "n1", 0.0, LEASE, max_attempts=3)
    with pytest.raises(Refused):
        lc.claim(rec, "n2", 5.0, LEASE, max_attempts=3)
    taken = lc.claim(rec, "n2", 10.5, LEASE, max_attempts=3)
    assert taken["epoch"] == 2 and taken["lease"]["holder"] == "n2"
    assert taken["history"][-1]["took_over"] == "n1"


def test_a_dead_holder_loses_its_lease_half_a_lease_after_its_last_renewal():
    rec = lc.claim(uploaded(), "n1", 0.0, LEASE, max_attempts=3)
    dead = lambda h: h != "n1"  # noqa: E731
    # seen dead 1 s after it wrote the lease: it may still be renewing (cut from us, not storage)
    assert lc.claimable(rec, 1.0, dead) == (
        False, "held by n1: seen dead, but it renewed the lease 1.0 s ago")
    with pytest.raises(Refused):
        lc.claim(rec, "n2", 4.9, LEASE, max_attempts=3, holder_alive=dead)
    # silent for half its lease (it renews every third): taken, well before expiry (10 s)
    taken = lc.claim(rec, "n2", 5.0, LEASE, max_attempts=3, holder_alive=dead)
    assert taken["epoch"] == 2 and taken["history"][-1]["reason"] == "holder dead"


def test_a_holder_seen_dead_that_keeps_renewing_keeps_its_lease():
    """Two nodes partitioned from each other, both reaching storage, each seeing the other dead:
    the holder renews every third of its lease, so the other never takes the lease, however long
    the partition lasts (each takeover would cost a transcode and a step of the takeover budget)."""
    rec = lc.claim(uploaded(), "n1", 0.0, LEASE, max_attempts=3)
    dead = lambda h: h != "n1"  # noqa: E731
    t = 0.0
    for _ in range(30):  # 100 s of renewals every lease/3
        t += LEASE / 3
        assert not lc.claimable(rec, t - 0.01, dead)[0]
        rec = lc.renew(rec, "n1", 1, t, LEASE)
    assert rec["epoch"] == 1 and rec.get("takeovers", 0) == 0
    # when it stops renewing (now really dead), the other takes it half a lease later
    assert not lc.claimable(rec, t + LEASE / 2 - 0.01, dead)[0]
    assert lc.claimable(rec, t + LEASE / 2, dead) == (True, "holder dead")


def test_a_lease_written_before_leases_carried_renewed_is_taken_from_a_dead_holder_at_once():
    rec = lc.claim(uploaded(), "n1", 0.0, LEASE, max_attempts=3)
    rec["lease"] = {"holder": "n1", "expires": LEASE}  # as an older node wrote it
    assert lc.claimable(rec, 1.0, lambda h: False) == (True, "holder dead")


def test_stale_worker_cannot_renew_or_commit_after_takeover():
    """Fencing: epoch 1's worker is stale once epoch 2 exists, whatever the clocks say."""
    rec1 = lc.claim(uploaded(), "n1", 0.0, LEASE, max_attempts=3)
    rec2 = lc.claim(rec1, "n2", 11.0, LEASE, max_attempts=3)
    with pytest.raises(Refused) as e:
        lc.commit_ready(rec2, "n1", 1, 12.0, [])
    assert e.value.code == "lost_lease"
    with pytest.raises(Refused):
        lc.renew(rec2, "n1", 1, 12.0, LEASE)
    with pytest.raises(Refused):
        lc.fail(rec2, "n1", 1, 12.0, "undecodable_input", "x")
    done = lc.commit_ready(rec2, "n2", 2, 13.0, [{"name": "360p"}])
    assert done["state"] == lc.READY and done["ready_epoch"] == 2 and done["lease"] is None


def test_commit_happens_once():
    rec = lc.claim(uploaded(), "n1", 0.0, LEASE, max_attempts=3)
    done = lc.commit_ready(rec, "n1", 1, 1.0, [])
    with pytest.raises(Refused):
        lc.commit_ready(done, "n1", 1, 2.0, [])
    with pytest.raises(Refused):
        lc.claim(done, "n2", 100.0, LEASE, max_attempts=3)
    assert [h["state"] for h in done["history"]].count("ready") == 1


def test_release_for_retry_backs_off_then_is_claimable():
    rec = lc.claim(uploaded(), "n1", 0.0, LEASE, max_attempts=3)
    rel = lc.release_for_retry(rec, "n1", 1, 1.0, "storage_error", "down", delay=4.0)
    assert rel["lease"] is None and rel["retry_at"] == 5.0
    assert lc.claimable(rel, 2.0) == (False, "backing off")
    assert lc.claimable(rel, 5.0)[0]
    again = lc.claim(rel, "n3", 5.0, LEASE, max_attempts=3)
    assert again["epoch"] == 2 and again["attempts"] == 2


def test_attempts_are_bounded_and_exhaustion_fails_with_reason():
    rec = uploaded()
    now = 0.0
    for i in range(3):
        rec = lc.claim(rec, "n1", now, LEASE, max_attempts=3)
        rec = lc.release_for_retry(rec, "n1", rec["epoch"], now, "transcode_error", f"boom {i}", delay=1.0)
        now += 2.0
    final = lc.claim(rec, "n1", now, LEASE, max_attempts=3)
    assert final["state"] == lc.FAILED
    assert final["error"]["code"] == "attempts_exhausted"
    assert "boom 2" in final["error"]["message"]


def test_undecodable_input_fails_at_once():
    rec = lc.claim(uploaded(), "n1", 0.0, LEASE, max_attempts=3)
    f = lc.fail(rec, "n1", 1, 1.0, "undecodable_input", "input cannot be decoded: no video stream")
    assert f["state"] == lc.FAILED and f["attempts"] == 1
    assert f["error"] == {"code": "undecodable_input", "message": "input cannot be decoded: no video stream"}


def test_delete_from_any_state_and_only_once():
    for rec in (uploaded(), lc.claim(uploaded(), "n1", 0, LEASE, max_attempts=3)):
        d = lc.delete(rec, "n2", 3.0)
        assert d["state"] == lc.DELETED and d["lease"] is None
        with pytest.raises(Refused):
            lc.delete(d, "n2", 4.0)
        with pytest.raises(Refused):
            lc.claim(d, "n1", 100.0, LEASE, max_attempts=3)


def test_uploading_becomes_uploaded_with_its_size():
    rec = lc.new_record("v" * 26, "n1", 0.0, state=lc.UPLOADING, filename=None, size=None)
    assert not lc.claimable(rec, 1.0)[0]
    up = lc.mark_uploaded(rec, "n2", 2.0, size=99)
    assert up["state"] == lc.UPLOADED and up["size"] == 99


def test_history_is_bounded_and_keeps_the_first_entry():
    rec = lc.claim(uploaded(), "n1", 0.0, LEASE, max_attempts=10_000)
    for i in range(lc.HISTORY_LIMIT + 50):
        rec = lc.release_for_retry(rec, "n1", rec["epoch"], float(i), "e", "m", delay=0.0)
        rec = lc.claim(rec, "n1", float(i), LEASE, max_attempts=10_000)
    assert len(rec["history"]) == lc.HISTORY_LIMIT
    assert rec["history"][0]["state"] == lc.UPLOADED


@pytest.mark.parametrize("attempt,base,cap,lo,hi", [
    (1, 1.0, 60.0, 0.5, 1.0), (2, 1.0, 60.0, 1.0, 2.0), (4, 1.0, 60.0, 4.0, 8.0),
    (10, 1.0, 60.0, 30.0, 60.0), (50, 0.5, 5.0, 2.5, 5.0),
])
def test_backoff_table(attempt, base, cap, lo, hi):
    rng = random.Random(7)
    for _ in range(50):
        d = lc.backoff(attempt, base, cap, rng)
        assert lo <= d <= hi


def test_public_view_shows_playback_only_when_ready():
    rec = lc.claim(uploaded(), "n1", 0.0, LEASE, max_attempts=3)
    assert "playback" not in lc.public_view(rec)
    assert lc.public_view(rec)["owner"] == "n1"
    done = lc.commit_ready(rec, "n1", 1, 1.0, [{"name": "360p", "width": 640, "height": 360, "bandwidth": 1}])
    v = lc.public_view(done)
    assert v["playback"] == {"hls": f"/v1/videos/{'v' * 26}/hls/master.m3u8", "poster": None}
    with_poster = lc.public_view(lc.commit_ready(rec, "n1", 1, 1.0, [], poster=True))
    assert with_poster["playback"]["poster"] == f"/v1/videos/{'v' * 26}/poster.jpg"
    assert v["renditions"][0]["name"] == "360p"


def test_takeovers_after_node_deaths_are_bounded_separately_from_failures():
    """A holder that dies (kill -9) is not the video's fault: takeovers do not use up the
    failure budget, but a video that kills every node that touches it still ends as failed."""
    rec = uploaded()
    now = 0.0
    for i in range(lc.TAKEOVER_FACTOR * 3 + 1):  # first claim + 9 takeovers with max_attempts=3
        rec = lc.claim(rec, f"n{i % 3}", now, LEASE, max_attempts=3)
        assert rec["state"] == lc.PROCESSING
        now += LEASE + 1  # the holder died: its lease expires
    assert rec["takeovers"] == lc.TAKEOVER_FACTOR * 3 and rec["failures"] == 0
    final = lc.claim(rec, "n1", now, LEASE, max_attempts=3)
    assert final["state"] == lc.FAILED and final["error"]["code"] == "attempts_exhausted"
    assert "node gone" in final["error"]["message"]


def test_a_takeover_then_a_release_counts_one_failure():
    rec = lc.claim(uploaded(), "n1", 0.0, LEASE, max_attempts=3)
    rec = lc.claim(rec, "n2", 6.0, LEASE, max_attempts=3, holder_alive=lambda h: False)
    rec = lc.release_for_retry(rec, "n2", rec["epoch"], 7.0, "storage_error", "down", delay=0.0)
    assert (rec["attempts"], rec["takeovers"], rec["failures"]) == (2, 1, 1)
