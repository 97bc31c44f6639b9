"""tus 1.0.0 against real node processes and the real S3 server.

- the protocol's answers (OPTIONS, creation, HEAD, PATCH refusals, termination, CORS, auth);
- 0 bytes, exactly one part, one byte over a part, creation-with-upload;
- two PATCHes at once: one 409, bytes intact;
- tuspy, 50 MiB in 6 MiB chunks through n1, interrupted halfway, n1 kill -9'd, resumed by the same
  client on n2: uploaded, bytes equal (sha256 via storage), processed once;
- a real video through tus (the CLI client) to ``ready``; tus-js-client (npm, run with node).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import trio
import trio_asyncio
from harness import Cluster, wait_state
from media import make_video

import storage
from node.records import layout

MiB = 1024 * 1024
PART = 5 * MiB
TUS = {"Tus-Resumable": "1.0.0"}
JS_DIR = Path(__file__).resolve().parents[1] / "js"


# ---- helpers ---------------------------------------------------------------------------------------

def storage_read(c: Cluster, fn):
    """Run ``await fn(store)`` against the cluster's bucket."""
    async def main():
        async with trio_asyncio.open_loop():
            async with storage.open_store(c.s3_endpoint, c.bucket, access_key=c.access_key,
                                          secret_key=c.secret_key, create_bucket=False) as st:
                return await fn(st)
    return trio.run(main)


def source_sha256(c: Cluster, vid: str) -> tuple[int, str]:
    async def read(st):
        h, n = hashlib.sha256(), 0
        async for chunk in st.iter_object(layout.source_key(vid)):
            h.update(chunk)
            n += len(chunk)
        return n, h.hexdigest()
    return storage_read(c, read)


def video_objects(c: Cluster, vid: str) -> tuple[list[str], int]:
    async def read(st):
        keys = [i.key for i in await st.list_all(layout.video_prefix(vid))]
        mps = await st.list_multipart_uploads(layout.video_prefix(vid))
        return keys, len(mps)
    return storage_read(c, read)


def create(c: Cluster, node: str, length: int, headers: dict | None = None, **kw) -> httpx.Response:
    meta = "filename " + base64.b64encode(b"clip.mp4").decode()
    h = c.headers({**TUS, "Upload-Length": str(length), "Upload-Metadata": meta, **(headers or {})})
    return httpx.post(c.url(node) + "/v1/uploads", headers=h, timeout=30, **kw)


def patch(c: Cluster, node: str, location: str, offset: int, body, *, checksum: bool = True,
          headers: dict | None = None) -> httpx.Response:
    h = {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
    if checksum and isinstance(body, bytes):
        h["Upload-Checksum"] = "sha1 " + base64.b64encode(hashlib.sha1(body).digest()).decode()
    h.update(headers or {})
    return httpx.patch(c.url(node) + location, content=body, headers=c.headers(h), timeout=60)


def head(c: Cluster, node: str, location: str) -> httpx.Response:
    return httpx.head(c.url(node) + location, headers=TUS, timeout=10)


def tus_upload(c: Cluster, node: str, data: bytes, pieces: list[int]) -> str:
    r = create(c, node, len(data))
    assert r.status_code == 201, r.text
    loc = r.headers["Location"]
    off = 0
    for n in pieces:
        r = patch(c, node, loc, off, data[off:off + n])
        assert r.status_code == 204, r.text
        off += n
        assert int(r.headers["Upload-Offset"]) == off and r.headers["Tus-Resumable"] == "1.0.0"
    return loc.rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("tus"), nodes=2,
                overrides={"storage": {"part_size": "5 MiB"}, "limits": {"max_upload_bytes": "1 GiB"}})
    try:
        yield c
    finally:
        c.close()


# ---- protocol surface ----------------------------------------------------------------------------------

def test_options_advertises_tus_and_answers_cors_preflight(cluster):
    for path in ("/v1/uploads", "/v1/uploads/" + layout.new_id()):
        r = httpx.options(cluster.url("n1") + path, headers={
            "Origin": "http://example.test", "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "upload-offset, tus-resumable, content-type, upload-checksum"})
        assert r.status_code == 204
        assert r.headers["Tus-Resumable"] == "1.0.0" and r.headers["Tus-Version"] == "1.0.0"
        ext = r.headers["Tus-Extension"].split(",")
        assert {"creation", "creation-with-upload", "termination", "checksum"} <= set(ext)
        assert r.headers["Tus-Checksum-Algorithm"] == "sha1"
        assert int(r.headers["Tus-Max-Size"]) == 1024 * MiB
        assert "PATCH" in r.headers["Access-Control-Allow-Methods"]
        allowed = r.headers["Access-Control-Allow-Headers"].lower()
        for h in ("authorization", "upload-offset", "upload-length", "upload-metadata", "upload-checksum",
                  "tus-resumable", "content-type"):
            assert h in allowed
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "upload-offset" in r.headers["Access-Control-Expose-Headers"].lower()


def test_creation_rules(cluster):
    assert create(cluster, "n1", 10, {"Tus-Resumable": "0.2.2"}).status_code == 412
    r = create(cluster, "n1", 2 * 1024 * MiB)
    assert r.status_code == 413 and r.headers["Tus-Resumable"] == "1.0.0"
    assert r.json()["error"]["code"] == "too_large"
    r = httpx.post(cluster.url("n1") + "/v1/uploads", headers={**TUS, "Upload-Length": "10"})
    assert r.status_code == 401 and r.headers["Tus-Resumable"] == "1.0.0"
    r = httpx.post(cluster.url("n1") + "/v1/uploads", headers=cluster.headers(TUS))
    assert r.status_code == 400
    r = create(cluster, "n1", 10)
    assert r.status_code == 201 and r.headers["Upload-Offset"] == "0" and "Upload-Expires" in r.headers
    vid = r.headers["Location"].rsplit("/", 1)[-1]
    assert r.headers["Location"] == f"/v1/uploads/{vid}"
    h = head(cluster, "n2", r.headers["Location"])  # any node answers
    assert (h.status_code, h.headers["Upload-Offset"], h.headers["Upload-Length"]) == (200, "0", "10")
    assert h.headers["Cache-Control"] == "no-store" and h.headers["Tus-Resumable"] == "1.0.0"
    v = httpx.get(cluster.url("n1") + f"/v1/videos/{vid}").json()
    assert v["state"] == "uploading" and v["filename"] == "clip.mp4" and v["upload"]["offset"] == 0
    assert head(cluster, "n1", "/v1/uploads/" + layout.new_id()).status_code == 404
    assert head(cluster, "n1", "/v1/uploads/not-an-id").status_code == 404


def test_patch_refusals_leave_stored_bytes_intact(cluster):
    data = random.Random(1).randbytes(PART + 1000)
    r = create(cluster, "n1", len(data))
    loc = r.headers["Location"]
    vid = loc.rsplit("/", 1)[-1]
    assert patch(cluster, "n1", loc, 0, data[:PART - 10]).status_code == 204

    def refused(resp, status, code):
        assert resp.status_code == status, resp.text
        assert resp.headers["Tus-Resumable"] == "1.0.0"
        if code:
            assert resp.json()["error"]["code"] == code
        assert head(cluster, "n2", loc).headers["Upload-Offset"] == str(PART - 10)

    rest = data[PART - 10:]
    refused(patch(cluster, "n1", loc, 0, rest), 409, "offset_mismatch")
    refused(patch(cluster, "n1", loc, PART - 10, rest, headers={"Upload-Checksum": "sha1 " + base64.b64encode(
        bytes(20)).decode()}), 460, "checksum_mismatch")
    refused(patch(cluster, "n1", loc, PART - 10, rest, headers={"Content-Type": "application/octet-stream"}),
            415, "bad_content_type")
    refused(patch(cluster, "n1", loc, PART - 10, rest + b"extra"), 413, "beyond_upload_length")
    refused(patch(cluster, "n1", loc, PART - 10, rest, headers={"Tus-Resumable": "2.0.0"}), 412, None)
    refused(httpx.patch(cluster.url("n1") + loc, content=rest, headers={
        **TUS, "Upload-Offset": str(PART - 10), "Content-Type": "application/offset+octet-stream"}), 401, None)
    # the right PATCH, on the other node, finishes it with the right bytes
    r = patch(cluster, "n2", loc, PART - 10, rest)
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(len(data))
    wait_state(cluster, "n1", vid, ["uploaded", "processing", "failed"], timeout=30)
    assert source_sha256(cluster, vid) == (len(data), hashlib.sha256(data).hexdigest())


def test_terminated_upload_is_gone_and_freed(cluster):
    data = random.Random(2).randbytes(PART + 5)
    r = create(cluster, "n1", len(data) + 10)
    loc = r.headers["Location"]
    vid = loc.rsplit("/", 1)[-1]
    assert patch(cluster, "n1", loc, 0, data).status_code == 204  # one part of PART + 5 bytes
    assert patch(cluster, "n1", loc, len(data), b"abc").status_code == 204  # and a tail
    keys, mps = video_objects(cluster, vid)
    assert mps == 1 and any("/tus/tail-" in k for k in keys)
    d = httpx.delete(cluster.url("n2") + loc, headers=cluster.headers(TUS))
    assert d.status_code == 204 and d.headers["Tus-Resumable"] == "1.0.0"
    assert head(cluster, "n1", loc).status_code == 410
    assert patch(cluster, "n1", loc, len(data) + 3, b"0123456").status_code == 410
    assert httpx.delete(cluster.url("n1") + loc, headers=cluster.headers(TUS)).status_code == 410
    assert video_objects(cluster, vid) == ([layout.record_key(vid)], 0)
    assert httpx.get(cluster.url("n1") + f"/v1/videos/{vid}").json()["state"] == "deleted"


@pytest.mark.parametrize("length, pieces", [
    (0, []), (PART, [PART]), (PART + 1, [PART + 1]), (PART + 1, [PART, 1]), (2 * PART + 7, [7, PART, PART])])
def test_sizes_at_part_boundaries(cluster, length, pieces):
    data = random.Random(length).randbytes(length)
    vid = tus_upload(cluster, "n1", data, pieces)
    rec = wait_state(cluster, "n2", vid, ["uploaded", "processing", "failed"], timeout=30)
    assert rec["size"] == length
    assert source_sha256(cluster, vid) == (length, hashlib.sha256(data).hexdigest())
    keys, mps = video_objects(cluster, vid)
    assert mps == 0 and not any("/tus/" in k for k in keys)


def test_creation_with_upload(cluster):
    data = random.Random(3).randbytes(PART + 3)
    r = create(cluster, "n1", len(data) + 4, {"Content-Type": "application/offset+octet-stream"},
               content=data)
    assert r.status_code == 201 and r.headers["Upload-Offset"] == str(len(data))
    loc = r.headers["Location"]
    assert patch(cluster, "n2", loc, len(data), b"tail").status_code == 204
    vid = loc.rsplit("/", 1)[-1]
    wait_state(cluster, "n1", vid, ["uploaded", "processing", "failed"], timeout=30)
    assert source_sha256(cluster, vid)[1] == hashlib.sha256(data + b"tail").hexdigest()


def test_two_patches_at_once_one_409_no_interleaving(cluster):
    data = random.Random(4).randbytes(PART + 100)
    r = create(cluster, "n1", len(data))
    loc = r.headers["Location"]
    vid = loc.rsplit("/", 1)[-1]
    started, go = threading.Event(), threading.Event()
    out: dict = {}

    def slow_body():
        yield data[:MiB]
        started.set()
        go.wait(30)
        for i in range(MiB, len(data), MiB):
            yield data[i:i + MiB]

    def first():
        out["first"] = patch(cluster, "n1", loc, 0, slow_body(), checksum=False,
                             headers={"Content-Length": str(len(data))})

    t = threading.Thread(target=first)
    t.start()
    try:
        assert started.wait(30)
        deadline = 50
        for _ in range(deadline):  # the first PATCH takes its lock on receipt of the headers
            second = patch(cluster, "n2", loc, 0, b"X" * len(data))
            if second.status_code == 409 and second.json()["error"]["code"] == "upload_locked":
                break
        assert second.status_code == 409 and second.json()["error"]["code"] == "upload_locked"
    finally:
        go.set()
        t.join(60)
    assert out["first"].status_code == 204 and out["first"].headers["Upload-Offset"] == str(len(data))
    wait_state(cluster, "n1", vid, ["uploaded", "processing", "failed"], timeout=30)
    assert source_sha256(cluster, vid)[1] == hashlib.sha256(data).hexdigest()


def test_real_video_through_tus_becomes_ready(cluster, tmp_path):
    from cli.client import Client
    path = make_video(tmp_path / "clip.mp4", seconds=2)
    with Client(cluster.config, node="n2", token=cluster.token) as client:
        rec = client.upload_resumable(path, chunk_size=PART)
    assert rec["state"] in ("uploaded", "processing", "ready")
    ready = wait_state(cluster, "n1", rec["id"], ["ready", "failed"], timeout=120)
    assert ready["state"] == "ready", ready
    assert ready["filename"] == "clip.mp4"
    assert source_sha256(cluster, rec["id"])[1] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                    reason="node/npm are not installed: tus-js-client cannot run")
def test_tus_js_client_uploads_end_to_end(cluster, tmp_path):
    js = tmp_path / "js"
    js.mkdir()
    for name in ("package.json", "tus_upload.js"):
        shutil.copy(JS_DIR / name, js / name)
    inst = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=js,
                          capture_output=True, text=True, timeout=180)
    assert inst.returncode == 0, inst.stderr[-2000:]
    data = random.Random(5).randbytes(PART + 12345)
    f = tmp_path / "movie.bin"
    f.write_bytes(data)
    for chunk in ("", str(3 * MiB)):  # one PATCH of everything; then 3 MiB PATCHes (tails)
        run = subprocess.run(["node", str(js / "tus_upload.js"), cluster.url("n1") + "/v1/uploads", str(f),
                              cluster.token, chunk], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "NODE_NO_WARNINGS": "1"})
        assert run.returncode == 0, run.stderr[-2000:]
        res = json.loads(run.stdout.strip().splitlines()[-1])
        vid = res["url"].rstrip("/").rsplit("/", 1)[-1]
        rec = wait_state(cluster, "n2", vid, ["uploaded", "processing", "failed"], timeout=30)
        assert rec["filename"] == "movie.bin"
        assert source_sha256(cluster, vid) == (len(data), hashlib.sha256(data).hexdigest())


# ---- a node dies mid-upload -----------------------------------------------------------------------------

def test_tuspy_resumes_on_another_node_after_kill_9(tmp_path):
    from tusclient.client import TusClient

    # lease_seconds is also the PATCH lock's time to live: a dead node's lock is taken over after it
    c = Cluster(tmp_path / "c", nodes=2, overrides={"storage": {"part_size": "5 MiB"},
                                                    "timing": {"lease_seconds": 3}})
    try:
        data = random.Random(6).randbytes(50 * MiB)
        f = tmp_path / "big.bin"
        f.write_bytes(data)
        client = TusClient(c.url("n1") + "/v1/uploads", headers={"Authorization": f"Bearer {c.token}"})
        up = client.uploader(str(f), chunk_size=6 * MiB, upload_checksum=True, retries=20, retry_delay=0.5,
                             metadata={"filename": "big.bin"})
        up.upload(stop_at=25 * MiB)  # interrupted halfway: 4 PATCHes of 6 MiB and one of 1 MiB on n1
        assert up.offset == 25 * MiB
        vid = up.url.rstrip("/").rsplit("/", 1)[-1]
        # n1 dies in the middle of a PATCH, holding the upload's lock
        started, killed, out = threading.Event(), threading.Event(), {}

        def cut_off_body():
            yield data[25 * MiB:27 * MiB]
            started.set()
            killed.wait(30)
            yield data[27 * MiB:31 * MiB]  # into a dead socket

        def doomed_patch():
            try:
                out["r"] = patch(c, "n1", f"/v1/uploads/{vid}", 25 * MiB, cut_off_body(), checksum=False,
                                 headers={"Content-Length": str(6 * MiB)})
            except Exception as e:  # the connection breaks (which error depends on timing)
                out["r"] = e

        t = threading.Thread(target=doomed_patch, daemon=True)
        t.start()
        assert started.wait(30)
        time.sleep(0.3)
        c.kill("n1")
        killed.set()
        t.join(30)
        assert isinstance(out.get("r"), Exception), out
        # the same client continues against n2
        up.set_url(c.url("n2") + f"/v1/uploads/{vid}")
        up.client.url = c.url("n2") + "/v1/uploads"
        up.offset = up.get_offset()
        assert up.offset == 25 * MiB  # everything n1 answered was durable
        up.upload()
        assert up.offset == len(data)
        rec = wait_state(c, "n2", vid, ["failed", "ready"], timeout=60)  # random bytes: undecodable
        assert rec["error"]["code"] == "undecodable_input"
        assert source_sha256(c, vid) == (len(data), hashlib.sha256(data).hexdigest())
        states = [h["state"] for h in rec["history"]]
        assert states == ["uploading", "uploaded", "processing", "failed"], states  # processed once
        claims = [ln for n in c.node_ids for ln in c.log_lines(n)
                  if ln.get("event") == "video_claimed" and ln.get("video") == vid]
        assert len(claims) == 1
    finally:
        c.close()
