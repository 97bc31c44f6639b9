"""What one `GET /v1/videos` may cost (docs/security.md, "Amplification"): an anonymous request
reads at most 100 records and one catalog page, whatever the catalog holds and whatever it asks;
state filters other than `ready` need the token.  No I/O: the app over a counting in-memory store.
"""

from __future__ import annotations

import pytest

import storage
from storage import cas
from node.config import Config, NodeSpec
from node.context import NodeContext
from node.http.app import create_app
from node.http.routes_videos import LIST_SCAN_ANONYMOUS
from node.process.worker import Worker
from node.records import layout, lifecycle
from node.records.store import VideoStore

TOKEN = "t0k"
CATALOG = 2500  # more than the token holders' scan (2,000 records) so every bound is reached
ANON_MAX_READS = LIST_SCAN_ANONYMOUS + 1  # records + one catalog page


class CountingStore(storage.MemoryStore):
    """Counts every storage read (object GETs, HEADs and LIST calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get(self, key):
        self.reads += 1
        return await super().get(key)

    async def get_range(self, key, start, end):
        self.reads += 1
        return await super().get_range(key, start, end)

    async def head(self, key):
        self.reads += 1
        return await super().head(key)

    async def list(self, prefix, **kw):
        self.reads += 1
        return await super().list(prefix, **kw)


@pytest.fixture
async def catalog():
    """2,500 videos in the catalog, none of them ready (the worst case for `state=ready`)."""
    store = CountingStore()
    for i in range(CATALOG):
        vid = layout.new_id(now=1_700_000_000 + i)
        await store.put(layout.catalog_key(vid), b"")
        await store.put(layout.record_key(vid), cas.encode(lifecycle.new_record(
            vid, "n1", 1_700_000_000 + i, state=lifecycle.UPLOADED, filename=None, size=1)))
    store.reads = 0
    return store


def client(tmp_path, store, token=TOKEN):
    cfg = Config(nodes=(NodeSpec("n1", "127.0.0.1", 1, 2),))
    videos = VideoStore(store, "n1")
    ctx = NodeContext(cfg=cfg, node_id="n1", store=store, videos=videos,
                      worker=Worker(videos, cfg, "n1", tmp_path), data_dir=tmp_path, token=token)
    return create_app(ctx).test_client()


async def get(c, store, url, **headers):
    store.reads = 0
    r = await c.get(url, headers=headers)
    return r.status_code, await r.get_json(), store.reads


@pytest.mark.parametrize("query", ["", "?state=ready", "?state=ready&limit=50", "?limit=50"])
async def test_anonymous_listing_reads_at_most_101_objects(tmp_path, catalog, query):
    c = client(tmp_path, catalog)
    status, body, reads = await get(c, catalog, "/v1/videos" + query)
    assert status == 200 and reads <= ANON_MAX_READS
    if "ready" in query:  # nothing is ready: an empty page, and where to go on
        assert body["videos"] == [] and body["next"] is not None
        # Walking the whole catalog takes 2500 / 100 requests, each within the bound, and one
        # more that finds the end (a scan that stops on a full page cannot know it was the last).
        pages, cursor = 1, body["next"]
        while cursor is not None:
            status, body, reads = await get(c, catalog, f"/v1/videos{query}&cursor={cursor}")
            assert status == 200 and reads <= ANON_MAX_READS and body["videos"] == []
            pages, cursor = pages + 1, body["next"]
        assert pages == CATALOG // LIST_SCAN_ANONYMOUS + 1
    else:
        assert len(body["videos"]) == 50 and body["next"] == body["videos"][-1]["id"]


async def test_anonymous_limits_and_state_filters(tmp_path, catalog):
    c = client(tmp_path, catalog)
    for query, status, code in [("?limit=51", 400, "bad_limit"), ("?limit=1000", 400, "bad_limit"),
                                ("?state=uploaded", 401, "unauthorized"),
                                ("?state=processing", 401, "unauthorized"),
                                ("?state=deleted", 401, "unauthorized")]:
        got, body, reads = await get(c, catalog, "/v1/videos" + query)
        assert (got, body["error"]["code"], reads) == (status, code, 0)
        assert body["error"]["message"]
    # A wrong token is no token.
    got, body, reads = await get(c, catalog, "/v1/videos?state=uploaded", Authorization="Bearer nope")
    assert (got, reads) == (401, 0)


async def test_token_holders_keep_the_full_listing_within_their_own_bound(tmp_path, catalog):
    c = client(tmp_path, catalog)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, body, reads = await get(c, catalog, "/v1/videos?state=uploaded&limit=1000", **auth)
    assert status == 200 and len(body["videos"]) == 1000 and reads <= 1000 + 5
    status, body, reads = await get(c, catalog, "/v1/videos?state=ready&limit=1000", **auth)
    assert status == 200 and body["videos"] == [] and reads <= 2000 + 10  # 2,000 records, 10 pages


async def test_auth_none_lists_by_any_state_within_the_anonymous_bound(tmp_path, catalog):
    c = client(tmp_path, catalog, token=None)
    status, body, reads = await get(c, catalog, "/v1/videos?state=uploaded&limit=50")
    assert status == 200 and len(body["videos"]) == 50 and reads <= ANON_MAX_READS
    status, body, reads = await get(c, catalog, "/v1/videos?limit=51")
    assert (status, body["error"]["code"], reads) == (400, "bad_limit", 0)
