"""The storage layer against the real embedded S3 server (SeaweedFS)."""

import os
import uuid

import pytest
import trio

import storage
from storage import cas
from conftest import open_test_store


def bucket() -> str:
    return "t" + uuid.uuid4().hex[:12]


async def test_conditional_create_and_cas(s3_server):
    async with open_test_store(s3_server, bucket()) as st:
        v = await cas.create(st, "rec.json", {"n": 0})
        with pytest.raises(storage.PreconditionFailed):
            await cas.create(st, "rec.json", {"n": 99})
        await st.put("rec.json", cas.encode({"n": 1}), if_match=v.etag)
        with pytest.raises(storage.PreconditionFailed):
            await st.put("rec.json", cas.encode({"n": 2}), if_match=v.etag)
        body, _ = await st.get("rec.json")
        assert cas.decode(body) == {"n": 1}
        with pytest.raises(storage.NotFound):
            await st.get("missing")


async def test_cas_update_races_have_no_lost_updates(s3_server):
    async with open_test_store(s3_server, bucket()) as st:
        await cas.create(st, "counter", {"n": 0})

        def incr(doc):
            return {"n": doc["n"] + 1}

        async def worker():
            for _ in range(3):
                await cas.update(st, "counter", incr, attempts=50)

        async with trio.open_nursery() as n:
            for _ in range(4):
                n.start_soon(worker)
        final = await cas.read(st, "counter")
        assert final.doc == {"n": 12}


async def test_streaming_upload_multipart_and_abort(s3_server):
    async with open_test_store(s3_server, bucket()) as st:
        data = os.urandom(11 * 1024 * 1024 + 123)
        async with storage.StreamingUpload(st, "obj", part_size=5 * 1024 * 1024) as up:
            for i in range(0, len(data), 100_000):
                await up.write(data[i:i + 100_000])
            await up.complete(if_none_match=True)
        body, _ = await st.get("obj")
        assert body == data
        assert await st.get_range("obj", 10, 19) == data[10:20]
        # an aborted upload leaves nothing behind
        with pytest.raises(RuntimeError):
            async with storage.StreamingUpload(st, "gone", part_size=5 * 1024 * 1024) as up:
                await up.write(data[: 6 * 1024 * 1024])
                raise RuntimeError("client went away")
        with pytest.raises(storage.NotFound):
            await st.head("gone")
        assert [u for u in await st.list_multipart_uploads("gone")] == []


async def test_empty_object_and_listing(s3_server):
    async with open_test_store(s3_server, bucket()) as st:
        async with storage.StreamingUpload(st, "a/empty", part_size=5 * 1024 * 1024) as up:
            await up.complete()
        assert (await st.head("a/empty")).size == 0
        for i in range(5):
            await st.put(f"a/k{i}", b"x")
        keys = [o.key for o in await st.list("a/", start_after="a/k1")]
        assert keys == ["a/k2", "a/k3", "a/k4"]
        assert await st.delete_prefix("a/") == 6
        assert await st.list("a/") == []


async def test_unreachable_storage_is_unavailable():
    import trio_asyncio
    async with trio_asyncio.open_loop():
        port = storage.free_port()
        async with storage.open_store(f"http://127.0.0.1:{port}", "nobucket", access_key="x",
                                      secret_key="y", create_bucket=False, connect_timeout=0.5) as st:
            with pytest.raises(storage.StorageUnavailable):
                await st.get("k")


@pytest.mark.parametrize("url,signed", [
    ("http://127.0.0.1:8333", False),
    ("http://localhost:9000", False),
    ("https://s3.example.com", False),
    ("http://minio.internal:9000", True),
])
def test_payload_signing_only_where_nothing_else_protects_the_body(url, signed):
    from storage.s3 import needs_payload_signing
    assert needs_payload_signing(url) is signed


async def test_unsigned_and_signed_payloads_are_both_accepted(s3_server):
    import trio_asyncio
    from conftest import ACCESS_KEY, SECRET_KEY
    async with trio_asyncio.open_loop():
        for sign in (True, False):
            async with storage.open_store(s3_server.endpoint, bucket(), access_key=ACCESS_KEY,
                                          secret_key=SECRET_KEY, sign_payload=sign) as st:
                await st.put("k", b"payload")
                assert (await st.get("k"))[0] == b"payload"
