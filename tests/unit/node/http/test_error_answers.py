"""The HTTP edge turns errors into the contract's error shape, from one table (no process, no
I/O: the table's pure function, and the app over the in-memory store, driven by Quart's test
client)."""

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound as HttpNotFound

import storage
from node.http.errors import INTERNAL, ApiError, answer_for
from node.records.lifecycle import Refused
from node.upload.errors import OffsetMismatch, UploadInProgress
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


# ---- the table: domain errors -> (status, code, message, extra, Retry-After) ---------------------------

class Meaningful(Exception):
    """A domain error whose row says everything but the message."""

    def __init__(self, message, **extra):
        super().__init__(message)
        self.message, self.extra = message, extra


@pytest.mark.parametrize("exc, answer", [
    (storage.StorageUnavailable("get k: refused"),
     (503, "storage_unavailable", "object storage is unreachable; retry shortly", {}, 2)),
    (storage.StorageError("put k: InvalidAccessKeyId"),
     (503, "storage_error", "object storage refused the request: put k: InvalidAccessKeyId", {}, 2)),
    # a subclass without a row of its own takes its parent's
    (storage.cas.CasExhausted("videos/x: 8 tries"),
     (503, "storage_error", "object storage refused the request: videos/x: 8 tries", {}, 2)),
    (Refused("wrong_state", "video is ready; cannot become uploaded"),
     (409, "wrong_state", "video is ready; cannot become uploaded", {}, None)),
    (UploadInProgress("retry"), (409, "upload_in_progress", "retry", {}, None)),
    (OffsetMismatch("offset 5, not 7"), (409, "offset_mismatch", "offset 5, not 7", {}, None)),
    (ApiError(401, "unauthorized", "token", retry_after=3, hint="x"), (401, "unauthorized", "token", {"hint": "x"}, 3)),
    (HttpNotFound(), (404, "not_found", HttpNotFound.description, {}, None)),
    (MethodNotAllowed(), (405, "method_not_allowed", MethodNotAllowed.description, {}, None)),
    (KeyError("boom"), tuple(INTERNAL)),
    (Meaningful("no row"), tuple(INTERNAL)),
])
def test_answer_for(exc, answer):
    assert tuple(answer_for(exc)) == answer


def test_a_row_gives_status_code_and_retry_after_and_the_error_its_message_and_extra(monkeypatch):
    from node.http import errors
    monkeypatch.setitem(errors.ANSWERS, Meaningful, errors.Row(409, "not_ready", None))
    a = answer_for(Meaningful("the video is processing", state="processing"))
    assert (a.status, a.code, a.message, a.extra, a.retry_after) == (
        409, "not_ready", "the video is processing", {"state": "processing"}, None)


async def test_the_one_handler_answers_domain_errors_from_the_table(tmp_path):
    # given the app, with a route that lets a records error through
    app = create_app(make_ctx(tmp_path, storage.MemoryStore()))

    @app.get("/refuses")
    async def refuses():
        raise Refused("already_deleted", "video is already deleted")

    @app.get("/breaks")
    async def breaks():
        raise RuntimeError("/home/someone/secret.py line 3")

    client = app.test_client()
    # when a handler raises it, then the answer is the table's, in the contract's shape
    r = await client.get("/refuses")
    assert r.status_code == 409
    assert await r.get_json() == {"error": {"code": "already_deleted", "message": "video is already deleted"}}
    # and anything without a row is a 500 that says nothing about the inside
    r = await client.get("/breaks")
    assert r.status_code == 500
    body = await r.get_json()
    assert body["error"]["code"] == "internal_error" and "secret" not in body["error"]["message"]


async def test_a_one_shot_upload_refused_by_the_store_keeps_its_answer(tmp_path):
    # given a body shorter than its Content-Length says (ingest raises BodyTooShort)
    client = create_app(make_ctx(tmp_path, storage.MemoryStore())).test_client()
    r = await client.post("/v1/videos", data=b"x" * 10, headers={
        "Authorization": "Bearer t0k", "Content-Length": "20"})
    # then the client gets its status and code, not a 500
    assert r.status_code == 400 and (await r.get_json())["error"]["code"] == "body_too_short"


def test_a_video_not_ready_is_answered_409_with_its_state():
    from node import play
    a = answer_for(play.NotReady("processing"))
    assert (a.status, a.code, a.extra) == (409, "not_ready", {"state": "processing"})
    assert "processing" in a.message
