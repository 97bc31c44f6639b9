"""CORS (node.http.edge): the origin rule by table, the `cors:` setting, then preflights and
answers through the app's test client and through the node's real HTTP stack in-process, with
and without the fast lane in front: the lane's answers carry exactly the app's CORS headers."""

from __future__ import annotations

from msgspec.structs import replace

import httpx
import pytest
import storage
import trio

from node.config import Config, ConfigError, CorsConfig
from node.http import edge
from node.http.app import create_app
from test_fast_lane import SEG, VID, make_ctx, ready_video, serve  # same directory

APP = "https://app.example"
EVIL = "https://evil.example"
LISTED = (APP, "http://127.0.0.1:8080")


# ---- pure --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("origins, origin, expect", [
    (("*",), None, {"Access-Control-Allow-Origin": "*"}),
    (("*",), EVIL, {"Access-Control-Allow-Origin": "*"}),
    (LISTED, APP, {"Access-Control-Allow-Origin": APP, "Vary": "Origin"}),
    (LISTED, "http://127.0.0.1:8080", {"Access-Control-Allow-Origin": "http://127.0.0.1:8080", "Vary": "Origin"}),
    (LISTED, EVIL, {"Vary": "Origin"}),
    (LISTED, APP + "/", {"Vary": "Origin"}),  # exact match only
    (LISTED, "null", {"Vary": "Origin"}),
    (LISTED, None, {"Vary": "Origin"}),
])
def test_answer_headers(origins, origin, expect):
    h = dict(edge.answer_headers(origins, origin))
    assert h.pop("Access-Control-Expose-Headers", None) == (
        edge.EXPOSE_HEADERS if "Access-Control-Allow-Origin" in expect else None)
    assert h == expect


@pytest.mark.parametrize("origins, origin, allow", [
    (("*",), EVIL, edge.METHODS),
    (("*",), None, edge.METHODS),
    (LISTED, APP, edge.METHODS),
    (LISTED, EVIL, None),
    (LISTED, None, None),
])
def test_preflight_headers(origins, origin, allow):
    h = dict(edge.preflight_headers(origins, origin))
    assert h.get("Access-Control-Allow-Methods") == allow
    assert ("Access-Control-Allow-Origin" in h) == (allow is not None)
    assert ("Access-Control-Allow-Headers" in h) == (allow is not None)
    if allow is not None:
        assert "Authorization" in h["Access-Control-Allow-Headers"]
        assert "Upload-Offset" in h["Access-Control-Allow-Headers"]
        assert h["Access-Control-Max-Age"] == edge.MAX_AGE
    assert "Access-Control-Expose-Headers" not in h  # preflights expose nothing


NODES = [{"id": "n1", "host": "127.0.0.1", "http_port": 1, "gossip_port": 2}]


@pytest.mark.parametrize("raw, origins", [
    (None, ("*",)),
    ({"origins": ["*"]}, ("*",)),
    ({"origins": [APP, "http://[::1]:8080"]}, (APP, "http://[::1]:8080")),
])
def test_the_cors_setting(raw, origins):
    doc = {"nodes": NODES} if raw is None else {"nodes": NODES, "cors": raw}
    assert Config.from_dict(doc).cors.origins == origins


@pytest.mark.parametrize("raw, message", [
    ({"origins": "*"}, "cors.origins: expected a list"),
    ({"origins": []}, "non-empty list"),
    ({"origins": ["*", APP]}, "stands alone"),
    ({"origins": [APP + "/"]}, "is not an origin"),
    ({"origins": ["app.example"]}, "is not an origin"),
    ({"origin": ["*"]}, "unknown key"),
    ("*", "expected a mapping"),
])
def test_bad_cors_settings_are_config_errors(raw, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"nodes": NODES, "cors": raw})


# ---- through the app's test client --------------------------------------------------------------------------

def _with(ctx, origins):
    """``ctx`` with ``cors.origins`` set (before the app or the lane reads it)."""
    ctx.cfg = replace(ctx.cfg, cors=CorsConfig(origins=origins))
    return ctx


UPLOAD = f"/v1/uploads/{VID}"
PREFLIGHTS = [  # (path, requested method, methods the answer must allow)
    ("/v1/videos", "POST", {"GET", "POST"}),
    (f"/v1/videos/{VID}", "DELETE", {"GET", "DELETE"}),
    (UPLOAD, "PATCH", {"PATCH", "HEAD", "DELETE"}),
    ("/v1/uploads", "POST", {"POST"}),
    (SEG, "GET", {"GET", "HEAD"}),
    (f"/v1/videos/{VID}/hls/master.m3u8", "GET", {"GET", "HEAD"}),
    ("/v1/cluster/members", "GET", {"GET"}),
    (f"/v1/cluster/owner/{VID}", "GET", {"GET"}),
]


@pytest.mark.parametrize("path, method, allowed", PREFLIGHTS)
async def test_preflight_from_an_allowed_origin(tmp_path, path, method, allowed):
    client = create_app(_with(make_ctx(tmp_path, storage.MemoryStore()), LISTED)).test_client()
    r = await client.options(path, headers={"Origin": APP, "Access-Control-Request-Method": method,
                                            "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code == 204, await r.get_data()
    assert r.headers["Access-Control-Allow-Origin"] == APP
    assert r.headers["Vary"] == "Origin"
    methods = {m.strip() for m in r.headers["Access-Control-Allow-Methods"].split(",")}
    assert method in methods and allowed <= methods and "OPTIONS" in methods
    assert r.headers["Access-Control-Allow-Headers"] == edge.ALLOW_HEADERS
    assert r.headers["Access-Control-Max-Age"] == edge.MAX_AGE
    assert r.headers["X-Served-By"] == "n1"


@pytest.mark.parametrize("path, method, allowed", PREFLIGHTS)
async def test_preflight_from_a_refused_origin_gets_no_cors_headers(tmp_path, path, method, allowed):
    client = create_app(_with(make_ctx(tmp_path, storage.MemoryStore()), LISTED)).test_client()
    r = await client.options(path, headers={"Origin": EVIL, "Access-Control-Request-Method": method})
    assert r.status_code == 204
    assert not [k for k in r.headers.keys() if k.lower().startswith("access-control-")]
    assert r.headers["Vary"] == "Origin"


async def test_default_star_answers_every_origin_without_vary(tmp_path):
    client = create_app(make_ctx(tmp_path, storage.MemoryStore())).test_client()
    r = await client.options("/v1/videos", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*" and "Vary" not in r.headers
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    r = await client.get("/v1/videos", headers={"Origin": EVIL})
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["Access-Control-Expose-Headers"] == edge.EXPOSE_HEADERS


async def test_tus_discovery_and_unknown_paths_are_unchanged(tmp_path):
    client = create_app(_with(make_ctx(tmp_path, storage.MemoryStore()), LISTED)).test_client()
    r = await client.options("/v1/uploads")  # tus discovery: no preflight
    assert r.status_code == 204 and r.headers["Tus-Version"] == "1.0.0" and r.headers["Tus-Resumable"] == "1.0.0"
    for path in ("/v1/uploads", UPLOAD):  # a preflight on tus paths also advertises tus
        r = await client.options(path, headers={"Origin": APP, "Access-Control-Request-Method": "PATCH"})
        assert r.status_code == 204 and r.headers["Access-Control-Allow-Origin"] == APP
        assert r.headers["Tus-Resumable"] == "1.0.0" and r.headers["Tus-Version"] == "1.0.0"
        assert r.headers["Tus-Checksum-Algorithm"] == "sha1" and "creation" in r.headers["Tus-Extension"]
        assert "upload-offset" in r.headers["Access-Control-Expose-Headers"].lower()
    r = await client.options("/nope", headers={"Origin": APP, "Access-Control-Request-Method": "GET"})
    assert r.status_code == 404 and (await r.get_json())["error"]["code"] == "not_found"
    assert r.headers["Access-Control-Allow-Origin"] == APP  # the error is readable by the page


async def test_writes_still_need_the_token_from_an_allowed_origin(tmp_path):
    client = create_app(_with(make_ctx(tmp_path, storage.MemoryStore()), LISTED)).test_client()
    r = await client.delete(f"/v1/videos/{VID}", headers={"Origin": APP})
    assert r.status_code == 401 and r.headers["Access-Control-Allow-Origin"] == APP


# ---- through hypercorn, with and without the fast lane ---------------------------------------------------------

REQUESTS = [  # (method, path, headers): the lane answers the GET/HEADs, the app the rest
    ("GET", SEG, {"Origin": APP}),
    ("GET", SEG, {"Origin": APP}),  # a cache hit: the lane's own answer
    ("HEAD", SEG, {"Origin": APP}),
    ("GET", SEG, {"Origin": EVIL}),
    ("GET", SEG, {}),
    ("GET", SEG, {"Origin": APP, "Range": "bytes=0-9"}),
    ("GET", f"/v1/videos/{VID}/hls/master.m3u8", {"Origin": APP}),
    ("GET", f"/v1/videos/{VID}/hls/360p/seg_00002.ts", {"Origin": APP}),  # 404
    ("GET", f"/v1/videos/{VID}/hls/360p/seg_00002.ts", {"Origin": EVIL}),
    ("OPTIONS", SEG, {"Origin": APP, "Access-Control-Request-Method": "GET"}),
    ("OPTIONS", SEG, {"Origin": EVIL, "Access-Control-Request-Method": "GET"}),
    ("OPTIONS", "/v1/videos", {"Origin": APP, "Access-Control-Request-Method": "POST"}),
    ("OPTIONS", f"/v1/videos/{VID}", {"Origin": APP, "Access-Control-Request-Method": "DELETE"}),
    ("OPTIONS", UPLOAD, {"Origin": APP, "Access-Control-Request-Method": "PATCH"}),
    ("OPTIONS", UPLOAD, {"Origin": EVIL, "Access-Control-Request-Method": "PATCH"}),
]


async def _answers(base: str) -> list[tuple[int, dict, bytes]]:
    out = []
    async with httpx.AsyncClient(base_url=base) as client:
        for method, path, headers in REQUESTS:
            r = await client.request(method, path, headers=headers)
            out.append((r.status_code, {k: v for k, v in r.headers.items() if k not in ("date", "server")},
                        r.content))
    return out


async def test_the_lane_and_the_app_give_the_same_cors_answers(tmp_path):
    store = storage.MemoryStore()
    await ready_video(store, b"z" * 5000)
    async with trio.open_nursery() as n:
        slow_ctx = _with(make_ctx(tmp_path / "a", store), LISTED)
        fast_ctx = _with(make_ctx(tmp_path / "b", store), LISTED)
        slow_url, _ = await serve(n, slow_ctx, lane=False)
        fast_url, lane = await serve(n, fast_ctx, lane=True)
        slow = await _answers(slow_url)
        fast = await _answers(fast_url)
        n.cancel_scope.cancel()
    assert [s for s, _, _ in slow] == [200, 200, 200, 200, 200, 206, 200, 404, 404] + [204] * 6
    for (method, path, headers), a, b in zip(REQUESTS, slow, fast):
        assert a == b, f"{method} {path} {headers}"
    acao = [h.get("access-control-allow-origin") for _, h, _ in fast]
    assert acao == [APP, APP, APP, None, None, APP, APP, APP, None, APP, None, APP, APP, APP, None]
    assert all(h["vary"] == "Origin" for _, h, _ in fast)
    assert fast[13][1]["access-control-allow-methods"] == edge.METHODS
    assert lane.answered == 9  # every GET/HEAD above; the preflights were the app's
    assert fast_ctx.metrics.events.values()["fast_lane_responses"] == 9


async def test_node_to_node_answers_carry_no_cors_headers_on_either_path(tmp_path):
    # given a ready video on two nodes' HTTP stacks, one with the fast lane in front
    store = storage.MemoryStore()
    await ready_video(store, b"z" * 5000)
    internal = f"/v1/internal/objects/{VID}/out/1/360p/seg_00001.ts"
    async with trio.open_nursery() as n:
        slow_url, _ = await serve(n, make_ctx(tmp_path / "a", store), lane=False)
        fast_url, lane = await serve(n, make_ctx(tmp_path / "b", store), lane=True)
        answers = []
        for base in (slow_url, fast_url):
            async with httpx.AsyncClient(base_url=base) as client:
                # when another node (or a page pretending to be one) reads an object or preflights
                got = await client.get(internal, headers={"Origin": APP})
                pre = await client.options(internal, headers={"Origin": APP,
                                                              "Access-Control-Request-Method": "GET"})
                answers.append((got, pre))
        n.cancel_scope.cancel()
    # then the object is served, but nothing invites a browser to read it or call the route
    for got, pre in answers:
        assert got.status_code == 200 and got.content == b"z" * 5000
        for r in (got, pre):
            assert not any(k.lower().startswith("access-control-") for k in r.headers), r.headers
        assert pre.status_code != 204
    assert lane.answered == 1


async def test_tus_headers_are_on_every_answer_under_uploads_and_only_there(tmp_path):
    """ShoalApp.after_request_under: tus's hook runs for /v1/uploads and below, routed or not
    (a 404 there says Tus-Resumable too), and for no other path (a one-shot upload never runs it)."""
    client = create_app(make_ctx(tmp_path, storage.MemoryStore())).test_client()
    for path, status in (("/v1/uploads/a/b/c", 404), ("/v1/uploads", 405)):  # no route; no GET there
        r = await client.get(path)
        assert r.status_code == status and r.headers["Tus-Resumable"] == "1.0.0"
        assert r.headers["Cache-Control"] == "no-store"
    for path in ("/v1/videos", "/v1/uploadsx", "/healthz"):
        r = await client.get(path)
        assert "Tus-Resumable" not in r.headers, path
