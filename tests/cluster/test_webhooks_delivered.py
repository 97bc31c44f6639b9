"""Webhooks end to end: real node processes, the real S3 server, real ffmpeg, a receiver in the test.

Given a 3-node cluster with ``webhooks.urls`` naming an HTTP receiver this test runs on
127.0.0.1, when a video is uploaded and becomes ready, an undecodable upload fails and the
first video is deleted, then the receiver gets ``uploaded``, ``ready``, ``failed`` and
``deleted``, each signed as docs/webhooks.md says (checked with the doc's own snippet) and with
the event id of the documented formula.  And when the receiver refuses (500) so the events wait
in the outbox, and the node that owns them is killed with SIGKILL, then once the receiver takes
them again every event arrives, sent by a surviving node; duplicates only ever repeat an id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

import media
from conftest import TEST_LADDER
from harness import owner_of, upload, wait_state

pytestmark = pytest.mark.cluster

SECRET = "whsec-cluster-test"


def verify_signature(secret: bytes, header: str, body: bytes, tolerance: int = 300) -> bool:
    """The verification snippet of docs/webhooks.md, verbatim."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    t, sig = int(parts["t"]), parts["v1"]
    want = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, sig) and abs(time.time() - t) <= tolerance


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers ``status``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts: list[tuple[int, dict[str, str], bytes]] = []  # (status answered, headers, body)
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    status = receiver.status
                    receiver.posts.append((status, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def taken(self) -> list[tuple[dict[str, str], dict, bytes]]:
        """(headers, event, raw body) of every POST answered 2xx."""
        with self.lock:
            return [(h, json.loads(b), b) for s, h, b in self.posts if 200 <= s < 300]

    def refused(self) -> list[dict]:
        with self.lock:
            return [json.loads(b) for s, _, b in self.posts if s >= 300]

    def wait_for(self, wanted: set[tuple[str, str]], timeout: float) -> list[tuple[dict[str, str], dict, bytes]]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.taken()
            if wanted <= {(e["video"], e["event"]) for _, e, _ in got}:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"after {timeout} s the receiver took {sorted((e['video'], e['event']) for _, e, _ in got)}, "
                                     f"wanted {sorted(wanted)}")
            time.sleep(0.1)


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def hooks(url: str) -> dict:
    return {"ladder": TEST_LADDER,
            "webhooks": {"urls": [url], "scan_interval": 0.3, "backoff_base": 0.2, "backoff_max": 1.0,
                         "max_attempts": 500, "timeout": 2.0}}


def assert_well_formed(got: list[tuple[dict[str, str], dict, bytes]], records: dict[str, dict]) -> None:
    """Signed, the documented id, the epoch the record's history names; an id repeats only
    with the same body (a duplicate), and one (video, event) never has two ids."""
    ids: dict[tuple[str, str], set[str]] = {}
    bodies: dict[str, dict] = {}
    for headers, ev, body in got:
        assert verify_signature(SECRET.encode(), headers["X-Shoal-Signature"], body), headers
        assert ev["id"] == hashlib.sha256(f"shoal-event\n{ev['video']}\n{ev['event']}\n{ev['epoch']}".encode()
                                          ).hexdigest()[:32]
        assert headers["X-Shoal-Event-Id"] == ev["id"] and headers["X-Shoal-Event"] == ev["event"]
        assert ev["state"] == ev["event"]
        history = records[ev["video"]]["history"]
        assert any(h["state"] == ev["event"] and h["epoch"] == ev["epoch"] for h in history), (ev, history)
        assert bodies.setdefault(ev["id"], ev) == ev  # a duplicate is the same event
        ids.setdefault((ev["video"], ev["event"]), set()).add(ev["id"])
    assert all(len(v) == 1 for v in ids.values()), ids


def test_uploaded_ready_failed_and_deleted_reach_the_receiver_signed(cluster_factory, receiver, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("SHOAL_WEBHOOK_SECRET", SECRET)
    c = cluster_factory(3, hooks(receiver.url))
    good = upload(c, "n1", media.make_video(tmp_path / "a.mp4", seconds=2)).json()["id"]
    bad = upload(c, "n2", media.make_random_bytes(tmp_path / "b.mp4")).json()["id"]
    wait_state(c, "n3", good, "ready", timeout=60)
    wait_state(c, "n3", bad, "failed", timeout=60)
    assert httpx.delete(c.url("n2") + f"/v1/videos/{good}", headers=c.headers()).status_code == 202
    got = receiver.wait_for({(good, "uploaded"), (good, "ready"), (good, "deleted"),
                             (bad, "uploaded"), (bad, "failed")}, timeout=30)
    records = {v: httpx.get(c.url("n1") + f"/v1/videos/{v}").json() for v in (good, bad)}
    assert_well_formed(got, records)
    assert {e["event"] for _, e, _ in got} == {"uploaded", "ready", "failed", "deleted"}  # nothing else
    # each node says what it sent, in /v1/node and in its log
    sent = sum(httpx.get(c.url(n) + "/v1/node").json()["webhooks"]["sent"] for n in c.node_ids)
    assert sent == len(got)
    exported = sum(float(line.split()[-1]) for n in c.node_ids
                   for line in httpx.get(c.url(n) + "/metrics").text.splitlines()
                   if line.startswith("shoal_webhooks_sent_total"))
    assert exported == sent
    logged = [l for n in c.node_ids for l in c.log_lines(n) if l["event"] == "webhook_sent"]
    assert {l["id"] for l in logged} == {e["id"] for _, e, _ in got}
    assert all(l["status"] == 200 and l["attempt"] >= 1 for l in logged)


def test_events_queued_on_a_node_killed_with_sigkill_are_delivered_by_the_next_owner(
        cluster_factory, receiver, tmp_path, monkeypatch):
    monkeypatch.setenv("SHOAL_WEBHOOK_SECRET", SECRET)
    receiver.status = 500  # the receiver is down: events wait in the outbox, retried
    c = cluster_factory(3, hooks(receiver.url))
    good = upload(c, "n1", media.make_video(tmp_path / "a.mp4", seconds=2)).json()["id"]
    bad = upload(c, "n1", media.make_random_bytes(tmp_path / "b.mp4", seed=3)).json()["id"]
    wait_state(c, "n1", good, "ready", timeout=60)
    wait_state(c, "n1", bad, "failed", timeout=60)
    holder = owner_of(c, good)  # the node that delivers (and retries) the good video's events
    deadline = time.monotonic() + 20
    while not {"ready", "uploaded"} <= {e["event"] for e in receiver.refused() if e["video"] == good}:
        assert time.monotonic() < deadline, receiver.refused()
        time.sleep(0.1)
    failed_on_holder = [l for l in c.log_lines(holder) if l["event"] == "webhook_failed" and l["video"] == good]
    assert failed_on_holder and all(l["status"] == 500 for l in failed_on_holder)

    c.kill(holder)  # SIGKILL: its entries stay in storage, owned by nobody until the ring moves
    receiver.status = 200
    survivor = next(n for n in c.node_ids if n != holder)
    got = receiver.wait_for({(good, "uploaded"), (good, "ready"), (bad, "uploaded"), (bad, "failed")},
                            timeout=40)
    records = {v: httpx.get(c.url(survivor) + f"/v1/videos/{v}").json() for v in (good, bad)}
    assert_well_formed(got, records)
    senders = {l["id"]: n for n in c.node_ids if n != holder
               for l in c.log_lines(n) if l["event"] == "webhook_sent" and l["video"] == good}
    assert {e["id"] for _, e, _ in got if e["video"] == good} <= set(senders), "a survivor sent them"
    assert holder not in senders.values()
