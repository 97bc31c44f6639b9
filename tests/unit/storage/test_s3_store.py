"""The storage layer against the real embedded S3 server (SeaweedFS)."""

import functools
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


# ---- parts streamed while their bytes arrive (storage.s3.RawPartWriter) ---------------------------------------
MiB = 1024 * 1024


async def test_streamed_parts_assemble_byte_exact_and_reuse_connections(s3_server):
    async with open_test_store(s3_server, bucket()) as st:
        assert st.raw is not None  # loopback: bodies go unsigned, so parts are streamed
        data = os.urandom(11 * MiB + 5)
        uid = await st.create_multipart("streamed")
        sizes = [5 * MiB, 6 * MiB + 5]
        parts, at = [], 0
        for number, size in enumerate(sizes, 1):
            w = st.part_writer("streamed", uid, number, size)
            for i in range(at, at + size, 300_001):  # odd chunks, some as memoryviews
                piece = data[i:min(i + 300_001, at + size)]
                await w.send(memoryview(piece) if number == 2 else piece)
            parts.append(storage.Part(number, await w.finish(), size))
            at += size
        assert len(st.raw._idle) == 1  # the one connection went back and was used again
        listed = await st.list_parts("streamed", uid)
        assert [(p.number, p.etag, p.size) for p in listed] == [(p.number, p.etag, p.size) for p in parts]
        await st.complete_multipart("streamed", uid, parts)
        body, _ = await st.get("streamed")
        assert body == data


async def test_streamed_part_of_a_gone_upload_is_not_found(s3_server):
    async with open_test_store(s3_server, bucket()) as st:
        uid = await st.create_multipart("gone")
        await st.abort_multipart("gone", uid)
        w = st.part_writer("gone", uid, 1, 5 * MiB)
        for _ in range(5):
            await w.send(os.urandom(MiB))
        with pytest.raises(storage.NotFound):
            await w.finish()


async def test_a_streamed_part_whose_connection_broke_is_sent_again(s3_server):
    """A connection that dies mid-part: finish() sends the kept bytes once more, buffered."""
    async with open_test_store(s3_server, bucket()) as st:
        data = os.urandom(5 * MiB)
        uid = await st.create_multipart("retry")
        told: list[tuple[str, str]] = []
        w = st.part_writer("retry", uid, 1, len(data), on_resend=lambda what, why: told.append((what, why)))
        await w.send(data[:MiB])
        await trio.aclose_forcefully(w._stream_)  # the server side sees a reset mid-body
        for i in range(MiB, len(data), MiB):
            await w.send(data[i:i + MiB])
        etag = await w.finish()
        assert st.raw.resent == 1  # sent once more, whole, through aiobotocore
        assert [what for what, _ in told] == ["upload part 1 of retry"]  # and told to on_resend
        await st.complete_multipart("retry", uid, [storage.Part(1, etag, len(data))])
        assert (await st.get("retry"))[0] == data


async def test_a_stale_idle_connection_is_not_reused(s3_server):
    async with open_test_store(s3_server, bucket()) as st:
        uid = await st.create_multipart("idle")
        for number in (1, 2):
            w = st.part_writer("idle", uid, number, 5 * MiB)
            await w.send(bytes(5 * MiB))
            await w.finish()
            if number == 1:
                (_, stream), = st.raw._idle
                st.raw._idle[0] = (st.raw._clock() - 60.0, stream)  # idle too long: dropped
        assert len(st.raw._idle) == 1 and st.raw._idle[0][1] is not stream
        await st.abort_multipart("idle", uid)


def test_sigv4_query_and_s3_error_documents():
    from storage import s3
    assert s3.canonical_query({"uploadId": "a/b+c=", "partNumber": "7"}) == "partNumber=7&uploadId=a%2Fb%2Bc%3D"
    doc = b"<?xml version='1.0'?><Error><Code>NoSuchUpload</Code><Message>x</Message></Error>"
    assert s3.error_code(doc) == "NoSuchUpload" and s3.error_code(b"") == ""
    assert isinstance(s3.answer_error("w", 404, doc), storage.NotFound)
    assert isinstance(s3.answer_error("w", 503, b""), storage.StorageUnavailable)
    assert isinstance(s3.answer_error("w", 400, b"<Code>SlowDown</Code>"), storage.StorageUnavailable)
    err = s3.answer_error("w", 403, b"<Code>AccessDenied</Code>")
    assert type(err) is storage.StorageError and "AccessDenied" in str(err)
    assert s3.parse_head(b"HTTP/1.1 200 OK\r\nETag: \"x\"\r\nContent-Length: 0") == (
        200, {"etag": '"x"', "content-length": "0"})
    with pytest.raises(storage.StorageUnavailable):
        s3.parse_head(b"garbage")


async def test_the_buffered_writer_refuses_a_short_or_long_part():
    st = storage.MemoryStore()
    uid = await st.create_multipart("k")
    w = st.part_writer("k", uid, 1, 10)
    await w.send(b"12345")
    with pytest.raises(ValueError):
        await w.send(b"123456")
    with pytest.raises(ValueError):
        await w.finish()
    await w.send(b"67890")
    etag = await w.finish()
    assert [(p.number, p.etag) for p in await st.list_parts("k", uid)] == [(1, etag)]


async def test_a_streamed_part_is_signed_and_a_refused_signature_is_not_sent_again(s3_server):
    """The server checks the SigV4 signature of a streamed part: wrong credentials are refused as
    such (not retried through the buffered path)."""
    from botocore.credentials import ReadOnlyCredentials
    from storage.s3 import RawS3

    async with open_test_store(s3_server, bucket()) as st:
        uid = await st.create_multipart("signed")

        async def wrong():
            return ReadOnlyCredentials("shoal-test", "not-the-secret", None)

        st.raw = RawS3(s3_server.endpoint, st._bucket, "us-east-1", wrong)
        w = st.part_writer("signed", uid, 1, 100)
        await w.send(b"x" * 100)
        with pytest.raises(storage.StorageError, match="SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId"):
            await w.finish()
        assert st.raw.resent == 0
        await st.raw.aclose()


# ---- StreamingUpload with the object's size known: parts streamed from their first byte -------------
@pytest.mark.parametrize("size", [1, 5 * MiB, 5 * MiB + 1, 12 * MiB + 4321])
async def test_streaming_upload_with_a_known_total_is_byte_exact(s3_server, size):
    import hashlib
    async with open_test_store(s3_server, bucket()) as st:
        assert st.raw is not None  # loopback: the parts are raw UploadPart streams
        data = os.urandom(size)
        async with storage.StreamingUpload(st, "known", part_size=5 * MiB, total=size) as up:
            for i in range(0, size, 299_993):  # odd chunks, some as memoryviews
                piece = data[i:i + 299_993]
                await up.write(memoryview(piece) if i % 2 else piece)
            await up.complete(if_none_match=True)
        assert (await st.get("known"))[0] == data
        assert up.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
        assert (await st.head("known")).size == size
        assert st.raw.resent == 0
        assert await st.list_multipart_uploads("known") == []


async def test_streaming_upload_with_a_known_total_of_zero_is_a_plain_put(s3_server):
    async with open_test_store(s3_server, bucket()) as st:
        async with storage.StreamingUpload(st, "empty", part_size=5 * MiB, total=0) as up:
            await up.complete(if_none_match=True)
        assert (await st.get("empty"))[0] == b""
        assert await st.list_multipart_uploads("empty") == []


async def test_streaming_upload_with_a_known_total_cut_short_leaves_nothing(s3_server):
    """The body ends mid-part (the client went away): the open writers are aborted with the
    multipart upload; no object, no upload in progress, and the store is still usable."""
    async with open_test_store(s3_server, bucket()) as st:
        data = os.urandom(7 * MiB)
        with pytest.raises(RuntimeError, match="client went away"):
            async with storage.StreamingUpload(st, "cut", part_size=5 * MiB, total=12 * MiB) as up:
                for i in range(0, len(data), MiB):
                    await up.write(data[i:i + MiB])
                raise RuntimeError("client went away")
        with pytest.raises(storage.NotFound):
            await st.head("cut")
        assert await st.list_multipart_uploads("cut") == []
        with pytest.raises(storage.StorageError, match="ended after"):
            async with storage.StreamingUpload(st, "short", part_size=5 * MiB, total=6 * MiB) as up:
                await up.write(data[:6 * MiB - 1])
                await up.complete()
        with pytest.raises(storage.NotFound):
            await st.head("short")
        assert await st.list_multipart_uploads("short") == []
        async with storage.StreamingUpload(st, "after", part_size=5 * MiB, total=len(data)) as up:
            await up.write(data)
            await up.complete()
        assert (await st.get("after"))[0] == data


async def test_small_puts_go_raw_and_keep_their_conditions(s3_server, monkeypatch):
    """PutObject through storage.s3: If-None-Match / If-Match answered as by aiobotocore, and a
    kept connection that the server closed is found out and the PUT sent once more."""
    from storage import s3

    async with open_test_store(s3_server, bucket()) as st:
        assert st.raw is not None
        etag = await st.put("r.json", b'{"n": 1}', if_none_match=True, content_type="application/json")
        with pytest.raises(storage.PreconditionFailed):
            await st.put("r.json", b'{"n": 2}', if_none_match=True)
        with pytest.raises(storage.PreconditionFailed):
            await st.put("r.json", b'{"n": 2}', if_match='"not-the-etag"')
        etag2 = await st.put("r.json", b'{"n": 3}', if_match=etag)
        assert (await st.get("r.json")) == (b'{"n": 3}', etag2)
        assert (await st.head("r.json")).size == 8

        # an idle connection whose other end hung up (a listener that closes what it accepts)
        async def hang_up(stream):
            await stream.aclose()

        async with trio.open_nursery() as n:
            listeners = await n.start(functools.partial(trio.serve_tcp, hang_up, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            dead = await trio.open_tcp_stream("127.0.0.1", port)
            await trio.sleep(0.05)
            monkeypatch.setattr(s3, "_quiet", lambda stream: True)  # the close is not seen yet
            st.raw._idle.append((st.raw._clock(), dead))
            etag3 = await st.put("r.json", b'{"n": 4}', if_match=etag2)
            assert (await st.get("r.json")) == (b'{"n": 4}', etag3)
            assert all(stream is not dead for _, stream in st.raw._idle)  # it was tried, and dropped
            n.cancel_scope.cancel()


def test_put_answers_map_to_storage_errors():
    from storage import s3
    assert isinstance(s3.put_error("p", 412, b""), storage.PreconditionFailed)
    assert isinstance(s3.put_error("p", 409, b"<Code>ConditionalRequestConflict</Code>"),
                      storage.PreconditionFailed)
    assert isinstance(s3.put_error("p", 404, b"<Code>NoSuchBucket</Code>"), storage.NotFound)
    assert isinstance(s3.put_error("p", 503, b"<Code>SlowDown</Code>"), storage.StorageUnavailable)
    assert type(s3.put_error("p", 400, b"<Code>InvalidArgument</Code>")) is storage.StorageError


async def test_a_presigned_get_is_sigv4_and_reads_ranges(s3_server):
    import httpx

    async with open_test_store(s3_server, bucket()) as st:
        data = os.urandom(50_000)
        await st.put("src", data)
        url = await st.presign_get("src", expires=60)
        assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "X-Amz-Signature=" in url, url
        assert "AWSAccessKeyId=" not in url  # not SigV2
        async with httpx.AsyncClient() as http:
            whole = await http.get(url)
            part = await http.get(url, headers={"Range": "bytes=100-199"})
        assert whole.status_code == 200 and whole.content == data
        assert part.status_code == 206 and part.content == data[100:200]
