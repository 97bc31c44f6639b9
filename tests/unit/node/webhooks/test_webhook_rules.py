"""Webhooks' pure parts: the event id, the signature, the retry schedule and the entry's fate.

No I/O: time is a number passed in, randomness a seeded RNG.
"""

import hashlib
import hmac
import json
import random

import pytest

from node.records import lifecycle as lc
from node.records import outbox
from node.webhooks import message, policy
from node.webhooks.policy import Action, Outcome, Verdict

VID = "a" * 26
SECRET = b"whsec-test"
URLS = ("http://127.0.0.1:1/a", "http://127.0.0.1:1/b")


def uploaded(now=10.0):
    return lc.new_record(VID, "n1", now, state=lc.UPLOADED, filename="a.mp4", size=10)


def test_event_id_is_a_function_of_video_event_and_epoch_only():
    a = outbox.event_id(VID, "ready", 3)
    assert a == outbox.event_id(VID, "ready", 3)  # re-emitted: the same id
    assert len(a) == 32 and int(a, 16) >= 0
    others = {outbox.event_id(VID, "ready", 4), outbox.event_id(VID, "failed", 3),
              outbox.event_id("b" * 26, "ready", 3)}
    assert a not in others and len(others) == 3
    # the formula docs/webhooks.md gives, so a receiver can recompute it
    assert a == hashlib.sha256(f"shoal-event\n{VID}\nready\n3".encode()).hexdigest()[:32]


def test_transitions_into_the_four_states_are_events_and_nothing_else_is():
    rec = uploaded()
    assert outbox.event_of(None, rec) == outbox.Event(VID, "uploaded", 0, 10.0)
    claimed = lc.claim(rec, "n2", 11.0, 10.0, max_attempts=3)
    assert outbox.event_of(rec, claimed) is None  # processing is not an event
    renewed = lc.renew(claimed, "n2", 1, 12.0, 10.0)
    assert outbox.event_of(claimed, renewed) is None  # no state change
    ready = lc.commit_ready(renewed, "n2", 1, 13.0, [])
    assert outbox.event_of(renewed, ready) == outbox.Event(VID, "ready", 1, 13.0)
    gone = lc.delete(ready, "n3", 14.0)
    assert outbox.event_of(ready, gone) == outbox.Event(VID, "deleted", 1, 14.0)
    failed = lc.fail(claimed, "n2", 1, 13.0, "undecodable_input", "nope")
    assert outbox.event_of(claimed, failed).event == "failed"
    tus = lc.new_record(VID, "n1", 1.0, state=lc.UPLOADING, filename=None, size=5)
    assert outbox.event_of(None, tus) is None
    assert outbox.event_of(tus, lc.mark_uploaded(tus, "n1", 2.0, size=5)).event == "uploaded"


def test_committed_means_the_state_at_the_epoch_is_in_the_history():
    rec = lc.claim(uploaded(), "n2", 11.0, 10.0, max_attempts=3)
    ready_entry = outbox.new_entry(outbox.Event(VID, "ready", 1, 13.0), now=12.9)
    assert not outbox.committed(ready_entry, rec)
    assert not outbox.committed(ready_entry, None)
    ready = lc.commit_ready(rec, "n2", 1, 13.0, [])
    assert outbox.committed(ready_entry, ready)
    assert outbox.committed(ready_entry, lc.delete(ready, "n1", 20.0))  # still happened
    stale = outbox.new_entry(outbox.Event(VID, "ready", 2, 13.0), now=12.9)
    assert not outbox.committed(stale, ready)  # another epoch never committed ready
    up = outbox.new_entry(outbox.Event(VID, "uploaded", 0, 10.0), now=9.9)
    assert outbox.committed(up, uploaded())


def test_signature_verifies_like_the_documented_snippet_and_refuses_tampering():
    body = message.body_of(outbox.new_entry(outbox.Event(VID, "ready", 2, 5.5), now=5.0))
    assert json.loads(body) == {"id": outbox.event_id(VID, "ready", 2), "event": "ready", "video": VID,
                                "state": "ready", "epoch": 2, "time": 5.5}
    header = message.sign(SECRET, body, 1000)
    t, v1 = header.split(",")
    assert t == "t=1000"
    assert v1 == "v1=" + hmac.new(SECRET, b"1000." + body, hashlib.sha256).hexdigest()
    assert message.verify(SECRET, header, body, now=1100)
    assert not message.verify(SECRET, header, body + b" ", now=1100)
    assert not message.verify(b"other", header, body, now=1100)
    assert not message.verify(SECRET, header, body, now=1000 + 301)  # too old: a replay
    assert not message.verify(SECRET, "garbage", body, now=1000)
    assert not message.verify(SECRET, "t=x,v1=00", body, now=1000)


@pytest.mark.parametrize("attempt, ceiling", [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (8, 60.0), (40, 60.0)])
def test_retry_delay_doubles_with_jitter_and_is_capped(attempt, ceiling):
    rng = random.Random(7)
    delays = [policy.retry_delay(attempt, 1.0, 60.0, rng) for _ in range(200)]
    assert all(0.5 * ceiling <= d <= ceiling for d in delays)
    assert max(delays) - min(delays) > 0.2 * ceiling  # jittered, not a fixed step


def entry_at(written_at=100.0, **kw):
    e = outbox.new_entry(outbox.Event(VID, "uploaded", 0, written_at), now=written_at)
    e.update(kw)
    return e


def test_plan_waits_for_the_commit_drops_after_grace_and_respects_next_at():
    rec = uploaded()
    assert policy.plan(entry_at(), rec, 101.0, grace=300) is Action.DELIVER
    assert policy.plan(entry_at(), None, 101.0, grace=300) is Action.WAIT  # may still commit
    assert policy.plan(entry_at(), None, 400.0, grace=300) is Action.DROP
    assert policy.plan(entry_at(next_at=150.0), rec, 149.0, grace=300) is Action.WAIT
    assert policy.plan(entry_at(next_at=150.0), rec, 150.0, grace=300) is Action.DELIVER


def test_a_round_keeps_what_was_taken_retries_the_rest_and_dies_at_max_attempts():
    rng = random.Random(1)
    kw = dict(max_attempts=3, base=1.0, cap=10.0, rng=rng)
    e = entry_at()
    r1 = policy.after_round(e, [Outcome(URLS[0], 200), Outcome(URLS[1], 500)], URLS, now=200.0, **kw)
    assert r1.verdict is Verdict.RETRY
    assert r1.entry["attempts"] == 1 and r1.entry["delivered"] == [URLS[0]]
    assert 200.5 <= r1.entry["next_at"] <= 201.0
    assert r1.entry["last"] == {"at": 200.0, "url": URLS[1], "status": 500, "error": None}
    assert policy.pending_urls(r1.entry, URLS) == [URLS[1]]  # the first URL is not sent again
    r2 = policy.after_round(r1.entry, [Outcome(URLS[1], None, "ConnectError")], URLS, now=210.0, **kw)
    assert r2.verdict is Verdict.RETRY and 211.0 <= r2.entry["next_at"] <= 212.0
    r3 = policy.after_round(r2.entry, [Outcome(URLS[1], 302)], URLS, now=220.0, **kw)  # 3xx is no delivery
    assert r3.verdict is Verdict.DEAD and r3.entry["attempts"] == 3 and r3.entry["dead_at"] == 220.0
    done = policy.after_round(r2.entry, [Outcome(URLS[1], 204)], URLS, now=220.0, **kw)
    assert done.verdict is Verdict.DONE and done.entry["delivered"] == list(URLS)
