"""The API description (node.http.openapi) against what the node really serves.

Given the OpenAPI document and the app's real url_map (and the fast lane's route table), then:
every (path template, method) the app serves outside /v1/internal/ is documented, every
documented (path, method), with its parameters' examples filled in, is routed by the app to a
rule serving that method; every error answer of a body-carrying method is the contract's error
shape; every code of the error table appears; the token-protected operations are exactly those
the app refuses without a token; the document validates as OpenAPI 3.1; and a node serves it.
"""

from __future__ import annotations

import re

import httpx
import pytest
import storage
import trio
from openapi_spec_validator import OpenAPIV31SpecValidator

from node.http import errors as http_errors
from node.http import fastlane, openapi
from node.http.app import create_app
from test_error_answers import make_ctx  # same directory
from test_fast_lane import make_ctx as make_lane_ctx, serve  # same directory

DOC = openapi.document()
METHODS = ("get", "head", "post", "put", "patch", "delete", "options")


def resolve(obj: dict) -> dict:
    """``obj`` with its ``$ref`` (local, one level at a time) followed."""
    while "$ref" in obj:
        node = DOC
        for part in obj["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def operations() -> list[tuple[str, str, dict]]:
    return [(path, method, op) for path, item in DOC["paths"].items()
            for method, op in item.items() if method in METHODS]


def example_path(path: str, op: dict) -> str:
    """``path`` with each ``{param}`` replaced by its schema's first example (which must match
    the parameter's own pattern or enum)."""
    values = {}
    for p in map(resolve, op.get("parameters", [])):
        if p["in"] != "path":
            continue
        schema = p["schema"]
        value = schema["examples"][0]
        if "pattern" in schema:
            assert re.search(schema["pattern"], value), (path, p["name"], value)
        if "enum" in schema:
            assert value in schema["enum"], (path, p["name"], value)
        values[p["name"]] = value
    filled = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
    assert "{" not in filled, f"{path}: a path parameter without a declaration"
    return filled


@pytest.fixture
def app(tmp_path):
    return create_app(make_ctx(tmp_path, storage.MemoryStore()))


def served(app) -> set[tuple[str, str]]:
    """(werkzeug rule, METHOD) of everything the app routes, internal routes left out."""
    return {(rule.rule, m) for rule in app.url_map.iter_rules() for m in rule.methods
            if not rule.rule.startswith(openapi.INTERNAL_PREFIX)}


def test_the_document_is_valid_openapi_3_1():
    OpenAPIV31SpecValidator(DOC).validate()
    assert DOC["openapi"].startswith("3.1")


def test_every_documented_path_and_method_is_served_and_every_served_one_documented(app):
    adapter = app.url_map.bind("localhost")
    covered: set[tuple[str, str]] = set()
    for path, method, op in operations():
        rule, _args = adapter.match(example_path(path, op), method=method.upper(), return_rule=True)
        assert method.upper() in rule.methods, (path, method)
        covered.add((rule.rule, method.upper()))
    missing = served(app) - covered
    assert not missing, f"served but not in the OpenAPI document: {sorted(missing)}"
    assert covered <= served(app)


def test_internal_routes_are_left_out_and_the_description_says_so(app):
    assert any(r.rule.startswith(openapi.INTERNAL_PREFIX) for r in app.url_map.iter_rules())
    assert not any(p.startswith(openapi.INTERNAL_PREFIX) for p in DOC["paths"])
    assert openapi.INTERNAL_PREFIX in DOC["info"]["description"]


def test_the_fast_lanes_routes_are_the_documented_hls_paths():
    # given the lane's route table: what it routes as playback is documented for GET and HEAD
    hls = [(p, op) for p, m, op in operations() if "/hls/" in p and m == "get"]
    assert len(hls) == 3
    for path, op in hls:
        target = example_path(path, op)
        kind, vid, rest = fastlane.route(target)
        assert kind == "playback" and target == f"/v1/videos/{vid}/hls/{rest}"
        assert {"get", "head"} <= set(DOC["paths"][path])
    # and its other route is an internal one, left out of the document
    internal = f"/v1/internal/objects/{openapi.EXAMPLE_ID}/out/1/master.m3u8"
    assert fastlane.route(internal)[0] == "internal" and internal.startswith(openapi.INTERNAL_PREFIX)
    assert fastlane.route("/v1/openapi.json") is None


def refs_error(schema: dict) -> bool:
    return schema.get("$ref") == openapi.ERROR_REF or any(
        s.get("$ref") == openapi.ERROR_REF for s in schema.get("allOf", []))


# Not errors: /readyz's 503 is its readiness report (which of storage or joining is missing).
NOT_ERRORS = {("/readyz", "get", "503")}


def test_every_error_answer_has_the_error_shape():
    checked = 0
    for path, method, op in operations():
        for status, resp in op["responses"].items():
            resp = resolve(resp)
            if int(status) < 400 or (path, method, status) in NOT_ERRORS:
                continue
            if method == "head":
                assert "content" not in resp, (path, method, status)  # HEAD answers have no body
                continue
            assert list(resp["content"]) == ["application/json"], (path, method, status)
            assert refs_error(resp["content"]["application/json"]["schema"]), (path, method, status)
            checked += 1
        assert "500" in op["responses"], (path, method)
    assert checked > 100
    shape = DOC["components"]["schemas"]["Error"]
    assert shape["required"] == ["error"]
    assert shape["properties"]["error"]["required"] == ["code", "message"]


def documented_codes() -> dict[str, set[str]]:
    """code -> the statuses it is documented under."""
    out: dict[str, set[str]] = {}
    for _path, method, op in operations():
        for status, resp in op["responses"].items():
            resp = resolve(resp)
            schema = resp.get("content", {}).get("application/json", {}).get("schema", {})
            for part in schema.get("allOf", [schema]):
                code = part.get("properties", {}).get("error", {}).get("properties", {}).get("code", {})
                for c in code.get("enum", []):
                    out.setdefault(c, set()).add(status)
    return out


def test_every_code_of_the_error_table_is_documented_with_its_status():
    codes = documented_codes()
    for cls, row in http_errors.ANSWERS.items():
        if isinstance(row.code, str) and cls.__module__ != "node.http.errors":
            assert str(row.status) in codes.get(row.code, set()), (cls.__name__, row.status, row.code)
    # werkzeug's answers: 405 may come from any path (the description says so); 408 never does
    # (node.http.app sets no BODY_TIMEOUT), the others are documented where a route gives them
    for status, code in http_errors.HTTP_CODES.items():
        if status == 405:
            assert f"`405 {code}`" in DOC["info"]["description"]
        elif status != 408:
            assert str(status) in codes.get(code, set()), (status, code)


async def test_the_operations_that_need_the_token_are_those_refused_without_it(tmp_path):
    # given a cluster with a token: every documented write says whether it needs it, and does
    client = create_app(make_ctx(tmp_path, storage.MemoryStore())).test_client()
    writes = [(p, m, op) for p, m, op in operations() if m in ("post", "patch", "delete")]
    assert len(writes) >= 6  # videos: upload, delete; tus: create, patch, terminate; debug
    for path, method, op in writes:
        r = await client.open(example_path(path, op), method=method.upper(),
                              headers={"Tus-Resumable": "1.0.0", "Content-Length": "0"})
        needs = op.get("security") == [{"bearer": []}]
        assert (r.status_code == 401) == needs, (path, method, r.status_code)
        if needs:
            assert (await r.get_json())["error"]["code"] == "unauthorized"
            assert "401" in op["responses"] and "403" in op["responses"]


async def test_the_app_serves_the_document_with_cors(app):
    r = await app.test_client().get(openapi.PATH, headers={"Origin": "https://app.example"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.headers["Access-Control-Allow-Origin"] == "*" and r.headers["X-Served-By"] == "n1"
    assert await r.get_json() == DOC


async def test_a_running_node_answers_the_document(tmp_path):
    # given the node's HTTP stack on a real socket, the fast lane in front (as node.main serves)
    async with trio.open_nursery() as nursery:
        addr, lane = await serve(nursery, make_lane_ctx(tmp_path, storage.MemoryStore()), lane=True)
        async with httpx.AsyncClient(base_url=addr) as http:
            r = await http.get(openapi.PATH)
            head = await http.head(openapi.PATH)
        nursery.cancel_scope.cancel()
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == DOC and r.headers["x-served-by"] == "n1"
    assert head.status_code == 200 and head.content == b""
    assert lane.handed_over >= 1 and lane.answered == 0  # not an HLS object: hypercorn answers it
