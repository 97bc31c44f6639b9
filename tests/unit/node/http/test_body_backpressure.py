"""quart-trio buffers a request body without limit when the handler is slower than the client.

Given a handler that reads slowly, when a client streams a large body as fast as it can,
then with Shoal's BackpressureConnection the bytes waiting in memory stay near the 1 MiB limit,
while stock quart-trio lets them grow with the upload (the flaw DESIGN.md measured).
"""

import functools
import json
import sys

import hypercorn.config
import hypercorn.trio
import trio
from quart import request
from quart_trio import QuartTrio

from node.http.app import ShoalApp
from node.http.app import BoundedBody
import storage

TOTAL = 48 * 1024 * 1024
LIMIT = 1 << 20


def make_app(cls):
    app = cls(__name__)
    app.config.update(MAX_CONTENT_LENGTH=None, BODY_TIMEOUT=None)

    @app.post("/slow")
    async def slow():
        peak = total = 0
        async for chunk in request.body:
            total += len(chunk)
            peak = max(peak, len(chunk))  # everything that waited in memory since the last read
            await trio.sleep(0.05)  # a handler slower than its client (e.g. a slow storage part)
        return {"total": total, "peak": peak}

    return app


async def run_client(app, script: str) -> bytes:
    """Serve ``app`` on a free port and run ``script`` (formatted with ``port``) in another
    process, so the client sends as fast as the socket allows; return its stdout."""
    port = storage.free_port()
    hc = hypercorn.config.Config()
    hc.bind = [f"127.0.0.1:{port}"]
    hc.accesslog = hc.errorlog = None
    stop = trio.Event()
    async with trio.open_nursery() as n:
        await n.start(functools.partial(hypercorn.trio.serve, app, hc, shutdown_trigger=stop.wait))
        with trio.fail_after(150):  # bounded; the client's own timeouts fire first
            done = await trio.run_process([sys.executable, "-c", script.replace("{port}", str(port))],
                                          capture_stdout=True)
        stop.set()
    return done.stdout


async def run_upload(app) -> dict:
    return json.loads(await run_client(app, CLIENT.format(port="{port}", total=TOTAL)))


CLIENT = """
import httpx, sys
def body():
    block = b"z" * (256 * 1024)
    for _ in range({total} // len(block)):
        yield block
r = httpx.post("http://127.0.0.1:{port}/slow", content=body(), headers={{"Content-Length": "{total}"}}, timeout=60)
assert r.status_code == 200, r.text
print(r.text)
"""


async def test_backpressure_bounds_the_buffered_body():
    BoundedBody.limit = LIMIT
    ours = await run_upload(make_app(ShoalApp))
    stock = await run_upload(make_app(QuartTrio))
    assert ours["total"] == stock["total"] == TOTAL
    # bounded: the limit plus at most one received message of hypercorn's
    assert ours["peak"] <= LIMIT + 256 * 1024, ours
    # and the flaw is real without the fix: stock quart-trio buffered far more
    assert stock["peak"] > 4 * ours["peak"], (stock, ours)


def make_early_answer_app():
    app = ShoalApp(__name__)
    app.config.update(MAX_CONTENT_LENGTH=None, BODY_TIMEOUT=None)

    @app.post("/refuse")
    async def refuse():
        return {"error": {"code": "unauthorized", "message": "no"}}, 401  # never reads the body

    @app.post("/partial")
    async def partial():
        async for chunk in request.body:  # reads a little, then refuses (like a failed check)
            break
        await trio.sleep(0.2)
        return {"error": {"code": "conflict", "message": "no"}}, 409

    return app


EARLY_CLIENT = """
import httpx
def body():
    block = b"z" * (256 * 1024)
    for _ in range({total} // len(block)):
        yield block
with httpx.Client(timeout=60) as c:  # generous: a loaded 2-core machine drains slowly
    r = c.post("http://127.0.0.1:{port}/refuse", content=body(), headers={{"Content-Length": "{total}"}})
    again = c.get("http://127.0.0.1:{port}/refuse")  # the connection is still usable
    p = c.post("http://127.0.0.1:{port}/partial", content=body(), headers={{"Content-Length": "{total}"}})
print(r.status_code, again.status_code, p.status_code)
"""


async def test_an_early_answer_does_not_hang_a_client_that_sends_the_whole_body_first():
    """Given a handler that answers 401 without reading, when the client (like tuspy or httpx)
    sends its whole body before reading the answer, then it gets the answer: unread bytes are
    drained and dropped, not held back."""
    BoundedBody.limit = LIMIT
    out = await run_client(make_early_answer_app(), EARLY_CLIENT.format(port="{port}", total=24 * 1024 * 1024))
    assert out.split() == [b"401", b"405", b"409"]


async def test_the_responses_last_send_finishes_even_when_the_connection_is_cancelled_meanwhile():
    """hypercorn closes the connection inside the send of the response's end; a cancellation
    landing there (our receive loop cancels on ``http.disconnect``, which that same end emits)
    left the socket open and the client's next request hung: the last send is shielded, the
    others stay cancellable (a client gone mid-response still stops the handler)."""
    from node.http.app import _last_send_shielded

    done: list[str] = []

    async def slow_send(message):  # like hypercorn's close: checkpoints inside
        await trio.sleep(0.05)
        done.append("part" if message.get("more_body") else "end")

    send = _last_send_shielded(slow_send)
    with trio.CancelScope() as scope:
        scope.cancel()
        await send({"type": "http.response.body", "body": b"x", "more_body": False})
    assert done == ["end"]
    with trio.CancelScope() as scope:
        scope.cancel()
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
    assert done == ["end"] and scope.cancelled_caught
