"""The outbox and its deliverer over the in-memory store, a fake clock and httpx's MockTransport.

Given records changed through VideoStore with an outbox, when the deliverer scans, then each
event is POSTed signed to every URL and removed; a crash on either side of the commit loses no
event and delivers none that did not happen; failures retry on the schedule kept in storage,
then the entry is a dead letter; a node delivers only the videos it owns.
"""

from __future__ import annotations

import io
import json
import random

import httpx
import pytest

import storage
from node import log
from node.config import WebhooksConfig
from node.records import VideoStore
from node.records import lifecycle as lc
from node.records import outbox
from node.records.outbox import Outbox
from node.webhooks import Deliverer, message
from node.webhooks.policy import Action

SECRET = b"whsec-unit"
URLS = ("http://127.0.0.1:9/a", "http://127.0.0.1:9/b")


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Receiver:
    """The MockTransport's handler: records every request; answers ``status`` (per URL path)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.status: dict[str, int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status.get(request.url.path, 200))

    def events(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests]


class Crash(Exception):
    """The process died here (raised by CrashingStore instead of doing the write)."""


class CrashingStore(storage.MemoryStore):
    """Raises ``error`` (:class:`Crash` by default) instead of the ``n``-th PUT whose key starts
    with ``prefix`` (``crash_on = (prefix, n)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.crash_on: tuple[str, int] | None = None
        self.error: type[Exception] = Crash

    async def put(self, key, body, **kw):
        if self.crash_on and key.startswith(self.crash_on[0]):
            prefix, n = self.crash_on
            self.crash_on = (prefix, n - 1) if n > 1 else None
            if n == 1:
                raise self.error(key)
        return await super().put(key, body, **kw)


@pytest.fixture
def logs():
    buf = io.StringIO()
    log.configure("n1", stream=buf)
    yield lambda: [json.loads(line) for line in buf.getvalue().splitlines()]
    log.configure("-", stream=__import__("sys").stderr)


def setup(store=None, *, owns=lambda vid: True, **cfg):
    store = store or storage.MemoryStore()
    clock = Clock()
    videos = VideoStore(store, "n1", clock=clock, outbox=Outbox(store, clock=clock, refresh_after=60.0))
    rx = Receiver()
    hooks = WebhooksConfig(urls=cfg.pop("urls", URLS), **{"intent_grace": 300.0, "max_attempts": 3, **cfg})
    d = Deliverer(videos, hooks, "n1", SECRET, owns=owns, clock=clock, rng=random.Random(3),
                  transport=httpx.MockTransport(rx))
    return store, clock, videos, rx, d


def new_video(clock):
    vid = "b" * 26
    return lc.new_record(vid, "n1", clock(), state=lc.UPLOADED, filename="f.mp4", size=3)


def outbox_keys(store):
    return sorted(k for k in store.objects if k.startswith(outbox.OUTBOX_PREFIX))


async def scan(d) -> int:
    """One scan of the outbox with a new client: how many entries it handled."""
    async with d.client() as client:
        return await d.scan_once(client)


async def delivered_upload():
    """``setup`` over a CrashingStore with one video whose ``uploaded`` event was delivered (the
    receiver's requests then cleared): ``setup``'s tuple and the record."""
    store, clock, videos, rx, d = setup(CrashingStore())
    rec = await videos.create(new_video(clock))
    await scan(d)
    rx.requests.clear()
    return store, clock, videos, rx, d, rec


async def test_each_event_is_posted_signed_to_every_url_then_removed(logs):
    store, clock, videos, rx, d = setup()
    rec = await videos.create(new_video(clock))
    clock.t += 1
    await videos.change(rec["id"], lambda r: lc.claim(r, "n1", clock(), 10.0, max_attempts=3))
    await videos.change(rec["id"], lambda r: lc.commit_ready(r, "n1", 1, clock(), []))
    assert len(outbox_keys(store)) == 2  # uploaded and ready; processing is no event
    assert await scan(d) == 2
    assert outbox_keys(store) == []
    events = rx.events()
    assert sorted((e["event"], u) for e, u in zip(events, (r.url.path for r in rx.requests))) == [
        ("ready", "/a"), ("ready", "/b"), ("uploaded", "/a"), ("uploaded", "/b")]
    for req, ev in zip(rx.requests, events):
        assert ev["id"] == outbox.event_id(ev["video"], ev["event"], ev["epoch"])
        assert message.verify(SECRET, req.headers[message.SIGNATURE_HEADER], req.content, now=clock())
        assert req.headers[message.EVENT_ID_HEADER] == ev["id"]
        assert req.headers[message.ATTEMPT_HEADER] == "1"
    assert {e["epoch"] for e in events if e["event"] == "ready"} == {1}
    sent = [l for l in logs() if l["event"] == "webhook_sent"]
    assert len(sent) == 4 and all(l["status"] == 200 and l["attempt"] == 1 for l in sent)
    assert d.statistics().sent == 4


async def test_the_entry_is_written_before_the_commit_so_a_crash_after_it_loses_nothing():
    store, clock, videos, rx, d, rec = await delivered_upload()
    # the node dies right after the DELETE committed, before its second outbox write
    store.crash_on = (outbox.OUTBOX_PREFIX, 1 + 1)  # the intent's PUT passes, the one after the CAS crashes
    with pytest.raises(Crash):
        await videos.change(rec["id"], lambda r: lc.delete(r, "n1", clock()))
    assert (await videos.get(rec["id"])).doc["state"] == "deleted"
    await scan(d)
    assert [e["event"] for e in rx.events()] == ["deleted", "deleted"]  # one per URL
    assert outbox_keys(store) == []


async def test_a_storage_error_after_the_commit_is_logged_and_the_commit_stands(logs):
    store, clock, videos, rx, d = setup(CrashingStore())
    rec = await videos.create(new_video(clock))
    store.crash_on, store.error = (outbox.OUTBOX_PREFIX, 2), storage.StorageUnavailable
    gone = await videos.change(rec["id"], lambda r: lc.delete(r, "n1", clock()))  # does not raise
    assert gone["state"] == "deleted"
    lines = logs()
    assert [l["state"] for l in lines if l["event"] == "video_state"][-1] == "deleted"
    assert [l["webhook"] for l in lines if l["event"] == "webhook_outbox_write_failed"] == ["deleted"]
    await scan(d)
    assert sorted(e["event"] for e in rx.events()) == ["deleted", "deleted", "uploaded", "uploaded"]


async def test_an_intent_whose_transition_never_committed_is_never_sent_and_dropped_after_grace(logs):
    store, clock, videos, rx, d, rec = await delivered_upload()
    # the node dies after writing the intent, before the CAS to `deleted`
    store.crash_on = ("videos/", 1)
    with pytest.raises(Crash):
        await videos.change(rec["id"], lambda r: lc.delete(r, "n1", clock()))
    [key] = outbox_keys(store)
    async with d.client() as client:
        clock.t += 299
        assert await d.handle(client, key) is Action.WAIT  # it may still commit
        clock.t += 2
        assert await d.handle(client, key) is Action.DROP
    assert rx.requests == [] and outbox_keys(store) == []
    assert [l["webhook"] for l in logs() if l["event"] == "webhook_dropped"] == ["deleted"]


async def test_failures_retry_on_the_stored_schedule_then_the_event_is_a_dead_letter(logs):
    store, clock, videos, rx, d = setup(max_attempts=3, backoff_base=10.0, backoff_max=100.0)
    rx.status = {"/b": 500}
    rec = await videos.create(new_video(clock))
    [key] = outbox_keys(store)
    async with d.client() as client:
        await d.handle(client, key)  # round 1: /a takes it, /b answers 500
        stored = json.loads(store.objects[key][0])
        assert stored["attempts"] == 1 and stored["delivered"] == [URLS[0]]
        assert 1005.0 <= stored["next_at"] <= 1010.0
        assert await d.handle(client, key) is Action.WAIT  # not due
        clock.t = stored["next_at"]
        await d.handle(client, key)  # round 2: only /b is tried again
        clock.t = json.loads(store.objects[key][0])["next_at"]
        await d.handle(client, key)  # round 3: dead
    assert [r.url.path for r in rx.requests] == ["/a", "/b", "/b", "/b"]
    assert [r.headers[message.ATTEMPT_HEADER] for r in rx.requests] == ["1", "1", "2", "3"]
    assert outbox_keys(store) == []
    dead = json.loads(store.objects[outbox.dead_key(rec["id"], outbox.event_id(rec["id"], "uploaded", 0))][0])
    assert dead["attempts"] == 3 and dead["last"]["status"] == 500 and dead["delivered"] == [URLS[0]]
    lines = logs()
    assert [(l["attempt"], l["status"]) for l in lines if l["event"] == "webhook_failed"] == [
        (1, 500), (2, 500), (3, 500)]
    assert [l["attempts"] for l in lines if l["event"] == "webhook_dead"] == [3]
    assert d.statistics().dead == 1


async def test_a_node_delivers_only_what_it_owns_and_the_next_owner_continues_the_count():
    store = storage.MemoryStore()
    store, clock, videos, rx, d1 = setup(store, owns=lambda vid: False, urls=URLS[:1])
    rec = await videos.create(new_video(clock))
    async with d1.client() as client:
        assert await d1.scan_once(client) == 0
    assert rx.requests == [] and len(outbox_keys(store)) == 1
    # what a dead owner left: one failed round recorded in storage
    key = outbox_keys(store)[0]
    doc = json.loads(store.objects[key][0])
    store.objects[key] = (json.dumps({**doc, "attempts": 1}).encode(), '"x"', 0.0)
    _, _, _, rx2, d2 = setup(store, urls=URLS[:1])
    async with d2.client() as client:
        assert await d2.scan_once(client) == 1
    assert [r.headers[message.ATTEMPT_HEADER] for r in rx2.requests] == ["2"]
    assert json.loads(rx2.requests[0].content)["video"] == rec["id"]


async def test_without_an_outbox_no_entries_are_written():
    store = storage.MemoryStore()
    videos = VideoStore(store, "n1")
    rec = await videos.create(new_video(Clock()))
    await videos.change(rec["id"], lambda r: lc.delete(r, "n1", 2000.0))
    assert outbox_keys(store) == []
