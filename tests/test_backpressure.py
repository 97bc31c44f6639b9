"""quart-trio buffers a request body without limit when the handler is slower than the client.

Given a handler that reads slowly, when a client streams a large body as fast as it can,
then with Shoal's BackpressureConnection the bytes waiting in memory stay near the 1 MiB limit,
while stock quart-trio lets them grow with the upload (the flaw DESIGN.md measured).
"""

import functools
import json
import sys

import httpx
import hypercorn.config
import hypercorn.trio
import trio
from quart import request
from quart_trio import QuartTrio

from node.app import ShoalApp
from node.http_body import BoundedBody
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


async def run_upload(app) -> dict:
    port = storage.free_port()
    hc = hypercorn.config.Config()
    hc.bind = [f"127.0.0.1:{port}"]
    hc.accesslog = hc.errorlog = None
    stop = trio.Event()
    async with trio.open_nursery() as n:
        await n.start(functools.partial(hypercorn.trio.serve, app, hc, shutdown_trigger=stop.wait))

        # the client is another process, so it sends as fast as the socket allows
        client = CLIENT.format(port=port, total=TOTAL)
        done = await trio.run_process([sys.executable, "-c", client], capture_stdout=True)
        stop.set()
    return json.loads(done.stdout)


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
