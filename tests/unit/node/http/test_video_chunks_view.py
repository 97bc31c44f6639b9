"""`GET /v1/videos/<id>` shows a chunked video's `chunks` and `progress`; a listing keeps the
progress and leaves the chunks out.  No I/O: the app over the in-memory store."""

from __future__ import annotations

import storage
from storage import cas
from node.config import Config, NodeSpec
from node.context import NodeContext
from node.http.app import create_app
from node.process.worker import Worker
from node.records import layout, lifecycle
from node.records.store import VideoStore

CHUNKS = [{"unit": "00000", "index": 0, "start": 0.0, "duration": 30.0, "state": "committed",
           "node": "n2", "epoch": 1, "progress": 1.0, "attempts": 1},
          {"unit": "audio", "index": None, "start": 0.0, "duration": 42.0, "state": "claimed",
           "node": "n3", "epoch": 2, "progress": 0.5, "attempts": 2}]


async def test_the_video_shows_its_chunks_and_the_listing_only_its_progress(tmp_path):
    store = storage.MemoryStore()
    vid = layout.new_id(now=1_700_000_000)
    rec = lifecycle.new_record(vid, "n1", 1.0, state=lifecycle.UPLOADED, filename=None, size=1)
    rec = lifecycle.claim(rec, "n1", 2.0, 60.0, max_attempts=3)
    rec = lifecycle.note_chunks(rec, "n1", 1, 3.0, 60.0, CHUNKS, 0.75)
    await store.put(layout.catalog_key(vid), b"")
    await store.put(layout.record_key(vid), cas.encode(rec))
    cfg = Config(nodes=(NodeSpec("n1", "127.0.0.1", 1, 2),))
    videos = VideoStore(store, "n1")
    ctx = NodeContext(cfg=cfg, node_id="n1", store=store, videos=videos,
                      worker=Worker(videos, cfg, "n1", tmp_path), data_dir=tmp_path, token=None)
    c = create_app(ctx).test_client()
    one = await (await c.get(f"/v1/videos/{vid}")).get_json()
    assert one["progress"] == 0.75 and one["chunks"] == CHUNKS
    listed = (await (await c.get("/v1/videos")).get_json())["videos"]
    assert [v["id"] for v in listed] == [vid]
    assert listed[0]["progress"] == 0.75 and "chunks" not in listed[0]
