"""The API description against real answers: real node processes, the real S3 server, real ffmpeg.

Given a 2-node cluster, when a tiny video is uploaded in one request and another with tus, one
is processed and played, and requests go wrong on purpose, then every node serves the same
``/v1/openapi.json``, and each real answer has a status the document gives its operation, the
media type it names, the headers it marks required, and a JSON body valid against its schema.
"""

from __future__ import annotations

import httpx
import pytest
from openapi_schema_validator import OAS31Validator

import media
from conftest import TEST_LADDER
from harness import upload, wait_state

pytestmark = pytest.mark.cluster


class Described:
    """The document as a node served it, and the check of one real answer against it."""

    def __init__(self, doc: dict) -> None:
        self.doc = doc
        self.checked: list[tuple[str, str, int]] = []

    def resolve(self, obj: dict) -> dict:
        while "$ref" in obj:
            node = self.doc
            for part in obj["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            obj = node
        return obj

    def check(self, path: str, method: str, r: httpx.Response) -> httpx.Response:
        op = self.doc["paths"][path][method]
        assert str(r.status_code) in op["responses"], (path, method, r.status_code, r.text[:300])
        resp = self.resolve(op["responses"][str(r.status_code)])
        for name, header in resp.get("headers", {}).items():
            if self.resolve(header).get("required"):
                assert name in r.headers, (path, method, r.status_code, name)
        content = resp.get("content")
        if content is None or method == "head":
            assert r.content == b"", (path, method, r.status_code)
        else:
            media_type = r.headers["content-type"].split(";")[0]
            assert media_type in content or "*/*" in content, (path, method, media_type)
            if media_type == "application/json":
                schema = {**content[media_type]["schema"], "components": self.doc["components"]}
                OAS31Validator(schema).validate(r.json())
        self.checked.append((path, method, r.status_code))
        return r


def test_real_answers_are_the_ones_the_document_describes(cluster_factory, tmp_path):
    c = cluster_factory(2, {"ladder": TEST_LADDER})
    n1, n2 = c.url("n1"), c.url("n2")
    served = [httpx.get(url + "/v1/openapi.json") for url in (n1, n2)]
    assert all(r.status_code == 200 and r.headers["content-type"] == "application/json" for r in served)
    assert served[0].content == served[1].content  # any node answers the same
    d = Described(served[0].json())
    auth = c.headers()

    # videos: a one-shot upload, its record while processing and once ready, the listing
    src = media.make_video(tmp_path / "in.mp4", seconds=2, width=192, height=144)
    vid = d.check("/v1/videos", "post", upload(c, "n1", src)).json()["id"]
    d.check("/v1/videos/{id}", "get", httpx.get(f"{n2}/v1/videos/{vid}"))
    wait_state(c, "n2", vid, "ready", timeout=120)
    d.check("/v1/videos/{id}", "get", httpx.get(f"{n2}/v1/videos/{vid}"))
    d.check("/v1/videos/{id}", "head", httpx.head(f"{n1}/v1/videos/{vid}"))
    d.check("/v1/videos", "get", httpx.get(f"{n1}/v1/videos"))
    d.check("/v1/videos", "get", httpx.get(f"{n1}/v1/videos", params={"state": "failed"}, headers=auth))

    # playback, from both nodes (the owner's cache and the other's hop), ranges and revalidation
    hls = f"/v1/videos/{vid}/hls/"
    for base in (n1, n2):
        d.check("/v1/videos/{id}/hls/master.m3u8", "get", httpx.get(base + hls + "master.m3u8"))
        index = d.check("/v1/videos/{id}/hls/{rendition}/index.m3u8", "get",
                        httpx.get(base + hls + "144p/index.m3u8"))
        seg = [line for line in index.text.splitlines() if line.endswith(".ts")][0]
        seg_path = "/v1/videos/{id}/hls/{rendition}/{segment}"
        whole = d.check(seg_path, "get", httpx.get(base + hls + "144p/" + seg))
        d.check(seg_path, "get", httpx.get(base + hls + "144p/" + seg, headers={"Range": "bytes=0-99"}))
        d.check(seg_path, "get", httpx.get(base + hls + "144p/" + seg,
                                           headers={"If-None-Match": whole.headers["etag"]}))
        d.check(seg_path, "head", httpx.head(base + hls + "144p/" + seg))
        d.check(seg_path, "get", httpx.get(base + hls + "144p/" + seg,
                                           headers={"Range": f"bytes={10 ** 9}-"}))  # 416 bad_range

    # resumable: discovery, create, append, offset (the video is then uploaded; not waited for)
    tus = {"Tus-Resumable": "1.0.0"}
    body = src.read_bytes()
    d.check("/v1/uploads", "options", httpx.options(f"{n1}/v1/uploads", headers=tus))
    created = d.check("/v1/uploads", "post", httpx.post(f"{n1}/v1/uploads", headers={
        **auth, **tus, "Upload-Length": str(len(body)), "Upload-Metadata": "filename YS5tcDQ="}))
    at = n2 + created.headers["location"]
    half = len(body) // 2
    d.check("/v1/uploads/{id}", "patch", httpx.patch(at, content=body[:half], headers={
        **auth, **tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}))
    d.check("/v1/uploads/{id}", "head", httpx.head(at, headers=tus))
    d.check("/v1/uploads/{id}", "patch", httpx.patch(at, content=body[:half], headers={
        **auth, **tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}))  # 409
    d.check("/v1/uploads/{id}", "patch", httpx.patch(at, content=body[half:], headers={
        **auth, **tus, "Upload-Offset": str(half), "Content-Type": "application/offset+octet-stream"}))
    d.check("/v1/uploads/{id}", "head", httpx.head(at, headers=tus))
    tus_vid = at.rsplit("/", 1)[1]  # the tus upload id is the video id: 409 not_ready (with its state) for now
    d.check("/v1/videos/{id}/hls/master.m3u8", "get", httpx.get(f"{n1}/v1/videos/{tus_vid}/hls/master.m3u8"))

    # the cluster and the node
    d.check("/v1/cluster/members", "get", httpx.get(f"{n1}/v1/cluster/members"))
    d.check("/v1/cluster/ring", "get", httpx.get(f"{n1}/v1/cluster/ring"))
    d.check("/v1/cluster/owner/{id}", "get", httpx.get(f"{n2}/v1/cluster/owner/{vid}"))
    d.check("/v1/node", "get", httpx.get(f"{n2}/v1/node"))
    d.check("/healthz", "get", httpx.get(f"{n1}/healthz"))
    d.check("/readyz", "get", httpx.get(f"{n1}/readyz"))
    d.check("/metrics", "get", httpx.get(f"{n1}/metrics"))
    d.check("/v1/videos", "options", httpx.options(f"{n1}/v1/videos", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"}))

    # wrong on purpose: each error is the contract's shape with a documented code
    d.check("/v1/videos", "post", httpx.post(f"{n1}/v1/videos", content=b"x"))  # 401
    d.check("/v1/videos", "post", httpx.post(f"{n1}/v1/videos", content=b"x",
                                              headers={"Authorization": "Bearer wrong"}))  # 403
    d.check("/v1/videos", "post", httpx.post(f"{n1}/v1/videos", content=b"", headers=auth))  # 400
    d.check("/v1/videos", "get", httpx.get(f"{n1}/v1/videos", params={"limit": "0"}))  # 400
    d.check("/v1/videos", "get", httpx.get(f"{n1}/v1/videos", params={"state": "failed"}))  # 401
    d.check("/v1/videos/{id}", "get", httpx.get(f"{n1}/v1/videos/{'a' * 26}"))  # 404
    d.check("/v1/videos/{id}/hls/master.m3u8", "get", httpx.get(f"{n2}/v1/videos/{'a' * 26}/hls/master.m3u8"))
    d.check("/v1/uploads", "post", httpx.post(f"{n1}/v1/uploads", headers=auth))  # 412
    d.check("/v1/uploads/{id}", "patch", httpx.patch(at, content=b"x", headers={**auth, **tus}))  # 415
    d.check("/v1/debug/gossip-block", "post", httpx.post(f"{n1}/v1/debug/gossip-block", json={"ids": 1},
                                                         headers=auth))  # 400

    statuses = {s for _p, _m, s in d.checked}
    assert {200, 201, 204, 206, 304, 400, 401, 403, 404, 409, 412, 415, 416} <= statuses
