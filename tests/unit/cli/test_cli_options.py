"""The command line's decisions without a cluster: where a command goes (--url / cluster.yml),
--version, members --state, and what `shoal status` calls a problem (its exit code).
Fake nodes are httpx.MockTransport; nothing listens on a socket."""

from __future__ import annotations

import importlib.metadata

import httpx
import pytest

from cli import Client, CliError
from cli.health import (STATUS_DEGRADED, STATUS_OK, format_status, node_problem, nodes_to_probe,
                        probe, problems, storage_from_nodes)
from cli.main import MEMBER_STATES, build_parser, main, package_version, select_members
from cli.target import Endpoint, choose_source, parse_urls, select_endpoint
from harness import one_port_refuses

ENV_NONE: dict[str, str] = {}


# ---- where a command goes ---------------------------------------------------------------------------
@pytest.mark.parametrize("url, config, env, expect", [
    (None, None, ENV_NONE, ("config", "cluster.yml")),
    (None, None, {"SHOAL_CONFIG": "/etc/c.yml"}, ("config", "/etc/c.yml")),
    (None, None, {"SHOAL_URL": "http://h:8001", "SHOAL_CONFIG": "/etc/c.yml"}, ("url", "http://h:8001")),
    (None, "c.yml", {"SHOAL_URL": "http://h:8001"}, ("config", "c.yml")),  # a flag beats the env
    ("http://a:1", None, {"SHOAL_CONFIG": "/etc/c.yml"}, ("url", "http://a:1")),
    (None, None, {"SHOAL_URL": ""}, ("config", "cluster.yml")),  # empty means unset
])
def test_the_source_rule(url, config, env, expect):
    src = choose_source(url, config, env)
    got = ("url", ",".join(e.url for e in src.urls)) if src.remote else ("config", str(src.config))
    assert got == expect
    assert (src.config is None) == src.remote


def test_url_and_config_together_are_refused():
    with pytest.raises(CliError, match="give --url or --config, not both"):
        choose_source("http://a:1", "c.yml", ENV_NONE)


def test_parse_urls_normalises_and_dedups():
    assert parse_urls(" http://127.0.0.1:8001/ ,https://example.org,http://127.0.0.1:8001") == (
        Endpoint("127.0.0.1:8001", "http://127.0.0.1:8001"),
        Endpoint("example.org:443", "https://example.org:443"))
    assert parse_urls("http://[::1]:8002") == (Endpoint("[::1]:8002", "http://[::1]:8002"),)


@pytest.mark.parametrize("text, words", [
    ("", "no URL given"), (" , ", "no URL given"),
    ("127.0.0.1:8001", "not an http(s)://host[:port] URL"), ("ftp://h:1", "not an http"),
    ("http://h:1/v1/videos", "without a path"), ("http://h:1/?a=b", "without a path"),
    ("http://h:99999", "bad port"), (",".join(f"http://h:{p}" for p in range(1, 70)), "at most 64"),
])
def test_parse_urls_refuses_what_is_not_a_node_url(text, words):
    with pytest.raises(CliError) as ei:
        parse_urls(text)
    assert words in str(ei.value)


def test_node_among_urls():
    eps = parse_urls("http://a:1,http://b:2")
    assert select_endpoint(eps, "b:2") == select_endpoint(eps, "http://b:2") == eps[1]
    with pytest.raises(CliError, match=r"--node n2: not one of the --url nodes \(a:1, b:2\)"):
        select_endpoint(eps, "n2")


@pytest.mark.parametrize("command", [["up"], ["down"], ["kill", "n1"], ["stop", "n1"],
                                     ["restart", "n1"], ["demo"], ["chaos", "run"]])
def test_process_commands_refuse_urls_only(command, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)  # no cluster.yml here
    monkeypatch.delenv("SHOAL_CONFIG", raising=False)
    monkeypatch.setenv("SHOAL_URL", "http://127.0.0.1:9")
    assert main(command) == 1
    err = capsys.readouterr().err
    assert err == (f"error: `shoal {command[0]}` manages processes on this machine and needs a "
                   "cluster.yml (--config PATH or $SHOAL_CONFIG); --url / $SHOAL_URL only reach "
                   "nodes over HTTP\n")
    assert not (tmp_path / "cluster.yml").exists() and list(tmp_path.iterdir()) == []


def test_without_cluster_yml_or_url_the_error_says_both(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    for var in ("SHOAL_CONFIG", "SHOAL_URL"):
        monkeypatch.delenv(var, raising=False)
    assert main(["members"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: config: cluster.yml: no such file") and "--url URL" in err


def test_token_with_urls_only_comes_from_the_environment(monkeypatch, capsys):
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    assert main(["--url", "http://127.0.0.1:9", "token"]) == 1
    assert capsys.readouterr().err == "error: no token: with --url, set $SHOAL_TOKEN\n"
    monkeypatch.setenv("SHOAL_TOKEN", "s3cret")
    assert main(["token", "--url", "http://127.0.0.1:9"]) == 0
    assert capsys.readouterr().out == "s3cret\n"


# ---- parser -----------------------------------------------------------------------------------------
def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as ei:
        build_parser().parse_args(["--version"])
    assert ei.value.code == 0
    assert capsys.readouterr().out == f"shoal {importlib.metadata.version('shoal')}\n"


def test_version_when_not_installed():
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    assert package_version(missing) == "(version unknown: the shoal package is not installed)"
    assert package_version(lambda name: "9.9.9") == "9.9.9"


def test_delete_and_member_state_options():
    a = build_parser().parse_args(["delete", "abc", "--url", "http://h:1", "--json"])
    assert (a.command, a.video, a.url, a.json) == ("delete", "abc", "http://h:1", True)
    a = build_parser().parse_args(["members", "--state", "dead", "--state", "suspect"])
    assert a.state == ["dead", "suspect"]
    assert build_parser().parse_args(["members"]).state is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["members", "--state", "zombie"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["delete"])


def test_select_members_by_state():
    ms = [{"id": f"n{i}", "state": s} for i, s in enumerate(MEMBER_STATES + ("alive",))]
    assert [m["id"] for m in select_members(ms, ["dead"])] == ["n2"]
    assert [m["id"] for m in select_members(ms, ["alive", "left"])] == ["n0", "n3", "n4"]
    assert select_members(ms, None) == ms and select_members(ms, []) == ms
    assert select_members([], ["dead"]) == []


# ---- the client with URLs only -------------------------------------------------------------------
def test_client_over_urls_fails_over_and_honours_node():
    seen: list[int] = []
    transport = one_port_refuses(1, seen, lambda req: httpx.Response(200, json={"port": req.url.port}))
    eps = parse_urls("http://127.0.0.1:1,http://127.0.0.1:2")
    with Client(eps, transport=transport) as c:
        assert c.get_json("/v1/videos") == {"port": 2}
        assert c.get_json("/v1/videos") == {"port": 2}  # remembered
    assert seen == [1, 2, 2]
    with Client(eps, node="127.0.0.1:1", transport=transport) as c:
        with pytest.raises(CliError, match=r"^no node answered: 127.0.0.1:1 \(http://127.0.0.1:1\)"):
            c.get_json("/v1/videos")
    with pytest.raises(CliError, match="no node to talk to"):
        Client([])


# ---- status: probing and the decision -----------------------------------------------------------------
def fake_node(healthz=200, readyz=200, body=None, refuse=False):
    def handler(req: httpx.Request) -> httpx.Response:
        if refuse:
            raise httpx.ConnectError("Connection refused")
        if req.url.path == "/healthz":
            return httpx.Response(healthz, json={"ok": healthz == 200})
        if req.url.path == "/readyz":
            return httpx.Response(readyz, json=body or {"ready": readyz == 200})
        return httpx.Response(200, json={"id": "n1", "uptime": 12.0})
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_probe_says_why():
    p = probe(fake_node(), "http://n")
    assert (p.healthz, p.readyz, p.reason, p.info) == (True, True, None, {"id": "n1", "uptime": 12.0})
    p = probe(fake_node(readyz=503, body={"ready": False, "storage": False, "joined": True}), "http://n")
    assert (p.healthz, p.readyz, p.reason) == (True, False, "storage unreachable from it")
    assert p.ready == {"ready": False, "storage": False, "joined": True}
    p = probe(fake_node(readyz=503, body={"ready": False, "storage": True, "joined": False}), "http://n")
    assert p.reason == "not joined to the cluster"
    p = probe(fake_node(refuse=True), "http://n")
    assert (p.healthz, p.readyz, p.reason, p.info) == (False, False, "GET /healthz: connection refused", None)
    p = probe(fake_node(healthz=500), "http://n")
    assert (p.healthz, p.reason) == (False, "GET /healthz answered 500")


def node(id="n1", healthz=True, readyz=True, **kw):
    return dict(id=id, url=f"http://127.0.0.1:800{id[-1]}", healthz=healthz, readyz=readyz, **kw)


def test_node_problem_names_the_node_and_the_reason():
    assert node_problem(node()) is None
    assert node_problem(node("n2", False, False, running=False, reason="GET /healthz: connection refused")) == (
        "node n2 (http://127.0.0.1:8002) is down: GET /healthz: connection refused")
    assert node_problem(node("n2", False, False, running=True, reason="GET /healthz: timed out (ReadTimeout)")) == (
        "node n2 (http://127.0.0.1:8002) is down: GET /healthz: timed out (ReadTimeout); its process runs (hung?)")
    assert node_problem(node("n3", True, False, reason="storage unreachable from it")) == (
        "node n3 (http://127.0.0.1:8003) is up but not ready: storage unreachable from it")
    assert node_problem(node("n3", False, False, gossip="dead")) == (
        "node n3 (http://127.0.0.1:8003) is down: no answer to GET /healthz (gossip: dead)")


@pytest.mark.parametrize("nodes, storage, n_problems, code", [
    ([node("n1"), node("n2")], {"reachable": True}, 0, STATUS_OK),
    ([node("n1"), node("n2", False, False)], {"reachable": True}, 1, STATUS_DEGRADED),
    ([node("n1"), node("n2")], {"reachable": False, "endpoint": "http://127.0.0.1:8333"}, 1, STATUS_DEGRADED),
    ([node("n1", True, False)], {"reachable": False}, 2, STATUS_DEGRADED),
    ([node("n1", False, False)], {"reachable": None}, 2, STATUS_DEGRADED),
])
def test_status_problems_decide_the_exit_code(nodes, storage, n_problems, code):
    found = problems({"nodes": nodes, "storage": storage})
    assert len(found) == n_problems
    assert (STATUS_DEGRADED if found else STATUS_OK) == code


def test_storage_problem_text():
    assert problems({"nodes": [], "storage": {"reachable": False, "endpoint": "http://s:8333"}}) == [
        "storage (http://s:8333) is unreachable"]
    assert problems({"nodes": [], "storage": {"reachable": False, "endpoint": None}}) == [
        "storage (as the nodes report it) is unreachable"]


def test_storage_as_the_nodes_report_it():
    ok = {"ready": {"storage": True}}
    bad = {"ready": {"storage": False}}
    assert storage_from_nodes([ok, ok]) is True
    assert storage_from_nodes([ok, bad]) is False
    assert storage_from_nodes([{"ready": None}, {}]) is None


def test_format_status_with_urls_only():
    st = {"seen_by": "n1", "storage": {"endpoint": None, "reachable": True},
          "nodes": [node("n1", info={"uptime": 75}, pid=None, running=None),
                    node("n2", False, False, pid=None, running=None)]}
    assert format_status(st) == "\n".join([
        "node  url                    pid  health  uptime",
        "----  ---------------------  ---  ------  ------",
        "n1    http://127.0.0.1:8001  -    ready   1m15s",
        "n2    http://127.0.0.1:8002  -    down    -",
        "",
        "storage, as the nodes report it: reachable (members as n1 sees them)"])


def test_remote_status_probes_every_member_but_those_that_left():
    doc = {"self": "n1", "members": [
        {"id": "n1", "http_addr": "10.0.0.1:8001", "state": "alive"},
        {"id": "n2", "http_addr": "10.0.0.2:8001", "state": "dead"},
        {"id": "n3", "http_addr": "10.0.0.3:8001", "state": "left"},
        {"id": "n4", "http_addr": "10.0.0.4:8001", "state": "suspect"}]}
    assert nodes_to_probe(doc, "https://shoal.example:443") == [
        {"id": "n1", "url": "https://shoal.example:443", "gossip": "alive"},
        {"id": "n2", "url": "http://10.0.0.2:8001", "gossip": "dead"},
        {"id": "n4", "url": "http://10.0.0.4:8001", "gossip": "suspect"}]
    assert nodes_to_probe({"self": "n1"}, "http://x:1") == []
