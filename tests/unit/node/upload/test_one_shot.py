"""The one-shot upload (node/upload/landing.py) over the in-memory store: streamed into the source,
short and long bodies refused without a video, Idempotency-Key retries answered with the first."""

import pytest

import storage
from node.http.errors import upload_answer
from node.records import VideoStore
from node.upload import ingest
from node.upload.errors import UploadRefused


async def body(chunks):
    for c in chunks:
        yield c


async def test_one_shot_ingest_streams_and_rejects_short_bodies_without_a_video():
    st = storage.MemoryStore()
    vs = VideoStore(st, "n1")

    def send(chunks, length, key=None):
        return ingest(vs, body(chunks), content_length=length, filename="f", idempotency_key=key,
                      part_size=5 << 20)

    with pytest.raises(UploadRefused) as e:
        await send([b"abc"], 10)
    assert upload_answer(e.value) == (400, "body_too_short")
    with pytest.raises(UploadRefused) as e:
        await send([b"abc", b"defgh"], 5)
    assert upload_answer(e.value) == (400, "body_too_long")
    assert not [k for k in st.objects if k.startswith(("videos/", "catalog/", "pending/"))]
    assert st.uploads == {}  # multipart uploads aborted
    res = await send([b"x" * 7], 7, "k1")
    again = await send([b"x" * 7], 7, "k1")
    assert res.created and not again.created and again.record["id"] == res.record["id"]
    assert len([k for k in st.objects if k.endswith("record.json")]) == 1
    assert res.record["state"] == "uploaded" and res.record["size"] == 7
