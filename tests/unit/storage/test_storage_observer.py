"""storage.store: the store tells its observer the time of every request, against the real
embedded S3 server (SeaweedFS), through aiobotocore and the raw paths alike."""

from __future__ import annotations

import uuid

import pytest
import trio_asyncio

import storage
from storage import cas
from storage.store import OPERATIONS, timed
from conftest import ACCESS_KEY, SECRET_KEY


def test_timed_reports_once_with_the_outcome():
    seen: list[tuple[str, float, bool]] = []
    with timed(lambda *a: seen.append(a), "get"):
        pass
    with pytest.raises(KeyError), timed(lambda *a: seen.append(a), "put"):
        raise KeyError("x")
    assert [(op, ok) for op, _, ok in seen] == [("get", True), ("put", False)]
    assert all(s >= 0 for _, s, _ in seen)


async def test_every_request_is_observed_by_operation(s3_server):
    # given a store opened with an observer
    seen: list[tuple[str, float, bool]] = []
    async with trio_asyncio.open_loop():
        async with storage.open_store(s3_server.endpoint, "t" + uuid.uuid4().hex[:12], access_key=ACCESS_KEY,
                                      secret_key=SECRET_KEY,
                                      observe=lambda *a: seen.append(a)) as st:
            assert st.raw is not None  # loopback: puts and parts go raw
            # when it does one of each kind of request
            await st.put("a", b"x" * 10)
            v = await cas.create(st, "rec.json", {"n": 0})
            await st.put("rec.json", cas.encode({"n": 1}), if_match=v.etag)
            with pytest.raises(storage.PreconditionFailed):
                await st.put("rec.json", cas.encode({"n": 2}), if_match=v.etag)
            await st.get("a")
            await st.head("a")
            await st.list("")
            uid = await st.create_multipart("big")
            w = st.part_writer("big", uid, 1, 6 << 20)
            await w.send(b"p" * (6 << 20))
            p1 = storage.Part(1, await w.finish(), 6 << 20)
            p2 = storage.Part(2, await st.upload_part("big", uid, 2, b"q" * 10), 10)
            await st.complete_multipart("big", uid, [p1, p2])
            await st.delete("a")
    # then each was told once, under its operation, with its outcome
    ops = [(op, ok) for op, _, ok in seen]
    assert all(op in OPERATIONS and s >= 0 for op, s, _ in seen)
    for expected in [("put", True), ("cas", True), ("cas", False), ("get", True), ("head", True),
                     ("list", True), ("create_multipart", True), ("upload_part_stream", True),
                     ("upload_part", True), ("complete_multipart", True), ("delete", True)]:
        assert expected in ops, (expected, ops)
    assert ops.count(("cas", True)) == 2  # the create and the update
