"""The HTTP edge turns storage failures into the contract's error shape (no process, no I/O:
the app over the in-memory store, driven by Quart's test client)."""

import pytest

import storage
from node.records import layout
from node.http.app import create_app
from node.config import Config, NodeSpec
from node.context import NodeContext
from node.records.store import VideoStore
from node.process.worker import Worker


def make_ctx(tmp_path, store):
    cfg = Config(nodes=(NodeSpec("n1", "127.0.0.1", 1, 2),))
    videos = VideoStore(store, "n1")
    return NodeContext(cfg=cfg, node_id="n1", store=store, videos=videos,
                       worker=Worker(videos, cfg, "n1", tmp_path), data_dir=tmp_path, token="t0k")


class Refusing(storage.MemoryStore):
    def __init__(self, exc):
        super().__init__()
        self.exc = exc

    async def get(self, key):
        raise self.exc


@pytest.mark.parametrize("exc,code", [
    (storage.StorageUnavailable("get: connection refused"), "storage_unavailable"),
    (storage.StorageError("get: InvalidAccessKeyId"), "storage_error"),
])
async def test_storage_failures_are_503_with_retry_after(tmp_path, exc, code):
    app = create_app(make_ctx(tmp_path, Refusing(exc)))
    r = await app.test_client().get(f"/v1/videos/{layout.new_id()}")
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"
    body = await r.get_json()
    assert body["error"]["code"] == code and body["error"]["message"]


async def test_unknown_routes_and_methods_are_json_errors(tmp_path):
    client = create_app(make_ctx(tmp_path, storage.MemoryStore())).test_client()
    r = await client.get("/nope")
    assert r.status_code == 404 and (await r.get_json())["error"]["code"] == "not_found"
    r = await client.put("/v1/videos")
    assert r.status_code == 405 and (await r.get_json())["error"]["code"] == "method_not_allowed"
    r = await client.post("/v1/videos", data=b"x")
    assert r.status_code == 401 and (await r.get_json())["error"]["code"] == "unauthorized"
