"""node.upload.landing.OwnerNotifier: after an upload lands here, the video's owner is told at once.

The request only queues the video (it never waits on another node, and looks nothing up); the
notifier's service asks the ring who owns it (``owner_of``, node.cluster.Cluster's in a node) and
either pokes this node's worker or POSTs the wake to the owner, signed with the cluster key.  A
full queue falls back to the local scan at once.
"""

from __future__ import annotations

import json
import time

import trio

from node import peer_auth
from node.config import Config, NodeSpec
from node.upload.landing import WAKE_QUEUE, OwnerNotifier

NODES = tuple(NodeSpec(f"n{i}", "127.0.0.1", 9100 + i, 9200 + i) for i in (1, 2, 3))
CFG = Config(nodes=NODES)
VID = "agf47zliac6zp34z4et2ymvbny"


def notifier(me: str, owner: str) -> tuple[OwnerNotifier, list[int]]:
    pokes: list[int] = []
    return OwnerNotifier(CFG, me, b"k3y", lambda vid: owner, lambda: pokes.append(1)), pokes


async def test_an_upload_this_node_owns_pokes_its_own_worker_without_a_request():
    # the request only queues the video (no ring lookup on its path); the service finds the owner
    n, pokes = notifier("n1", owner="n1")
    n.notify(VID)
    assert pokes == []
    async with trio.open_nursery() as nursery:
        await nursery.start(n.serve)
        with trio.fail_after(5):
            while not pokes:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert pokes == [1]


def test_the_notification_queue_is_bounded_and_the_overflow_falls_back_to_the_local_scan():
    n, pokes = notifier("n1", owner="n2")
    for _ in range(WAKE_QUEUE):
        n.notify(VID)  # queued for the service, never waiting
    assert pokes == []
    n.notify(VID)
    assert pokes == [1]


async def test_the_service_tells_the_owner_over_http():
    # given the owner's wake endpoint on 127.0.0.1 (a tiny HTTP/1.1 server)
    heard: list[bytes] = []
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    cfg = Config(nodes=(NodeSpec("n1", "127.0.0.1", 9101, 9201), NodeSpec("n2", "127.0.0.1", port, 9202)))

    async def handle(stream):
        async with stream:
            buf = b""
            while b"\r\n\r\n" not in buf or not buf.endswith(b"}"):
                buf += await stream.receive_some(4096)
            heard.append(buf)
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")

    pokes: list[int] = []
    n = OwnerNotifier(cfg, "n1", b"k3y", lambda vid: "n2", lambda: pokes.append(1))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        await nursery.start(n.serve)
        # when an upload of n2's video lands here
        n.notify(VID)
        with trio.fail_after(10):
            while not heard:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    # then n2 heard of it, with a proof of the cluster key (not the client token), and our own
    # worker was left alone
    request = heard[0].decode()
    assert request.startswith("POST /v1/internal/wake ") and "authorization" not in request.lower()
    proof = next(line.split(":", 1)[1].strip() for line in request.split("\r\n")
                 if line.lower().startswith("x-shoal-hop:"))
    peer_auth.verify(b"k3y", proof, "POST", "/v1/internal/wake", time.time())  # raises if not
    assert json.loads(request.split("\r\n\r\n", 1)[1]) == {"video": VID}
    assert pokes == []
