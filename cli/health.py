"""`shoal status`: is every node up and ready, and does storage answer? Which one is not, and why.

A node is healthy when ``GET /healthz`` and ``GET /readyz`` both answer 200. A 503 from
``/readyz`` carries ``{"storage": bool, "joined": bool}``, which become the reason; a transport
failure becomes its own reason (connection refused, timed out). :func:`problems` is pure and
decides the exit code: any problem exits 1 (:data:`STATUS_DEGRADED`), none exits 0.

Two sources of the node list:
- a cluster.yml: :meth:`cli.launcher.Launcher.status` (pid, /healthz, /readyz, storage), then
  :func:`explain` probes only the nodes that are not ready, for the reason;
- URLs only (:func:`remote_status`): the members one of them lists (advertised ``http_addr``),
  each probed; storage is as the nodes report it in ``/readyz`` (there is no endpoint to try).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import httpx

from .client import Client, transport_reason
from .errors import CliError
from .tables import format_table, human_duration
from .target import Endpoint

__all__ = ["STATUS_OK", "STATUS_DEGRADED", "Probe", "probe", "explain", "node_problem",
           "problems", "nodes_to_probe", "remote_status", "storage_from_nodes", "format_status"]

STATUS_OK, STATUS_DEGRADED = 0, 1
_PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Probe:
    healthz: bool
    readyz: bool
    ready: dict | None  # the /readyz body ({"ready","storage","joined","node"}) when it was JSON
    reason: str | None  # why not healthy/ready, in words; None when ready
    info: dict | None  # GET /v1/node when it answered


def probe(http: httpx.Client, url: str) -> Probe:
    """GET /healthz, /readyz and /v1/node of one node (three requests at most)."""
    try:
        r = http.get(url + "/healthz")
    except httpx.HTTPError as e:
        return Probe(False, False, None, f"GET /healthz: {_words(e)}", None)
    if r.status_code != 200:
        return Probe(False, False, None, f"GET /healthz answered {r.status_code}", None)
    ready: dict | None = None
    try:
        r = http.get(url + "/readyz")
        readyz, reason = r.status_code == 200, None
        body = r.json()
        ready = body if isinstance(body, dict) else None
        if not readyz:
            reason = _not_ready_reason(ready, r.status_code)
    except httpx.HTTPError as e:
        readyz, reason = False, f"GET /readyz: {_words(e)}"
    except ValueError:
        reason = None if readyz else f"GET /readyz answered {r.status_code}"
    info = None
    try:
        r = http.get(url + "/v1/node")
        info = r.json() if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        pass
    return Probe(True, readyz, ready, reason, info if isinstance(info, dict) else None)


def _words(e: httpx.HTTPError) -> str:
    return transport_reason(e) if isinstance(e, httpx.TransportError) else f"{type(e).__name__}: {e}"


def _not_ready_reason(body: dict | None, status: int) -> str:
    if not body:
        return f"GET /readyz answered {status}"
    why = []
    if body.get("storage") is False:
        why.append("storage unreachable from it")
    if body.get("joined") is False:
        why.append("not joined to the cluster")
    return ", ".join(why) or f"GET /readyz answered {status}"


def explain(st: dict, http: httpx.Client) -> dict:
    """Add ``reason`` and ``ready`` to the nodes of a launcher status that are not ready."""
    for n in st["nodes"]:
        if n.get("readyz"):
            continue
        p = probe(http, n["url"])
        n["ready"] = p.ready
        n["reason"] = p.reason or "not ready when first asked, ready now"
    return st


# ---- the decision (pure) ---------------------------------------------------------------------------
def node_problem(n: dict) -> str | None:
    """One node's problem in words, or None when it answers /healthz and /readyz with 200."""
    if n.get("healthz") and n.get("readyz"):
        return None
    where = f"node {n['id']} ({n['url']})"
    reason = n.get("reason")
    if not n.get("healthz"):
        if n.get("running") is True:
            reason = f"{reason or 'no answer'}; its process runs (hung?)"
        text = f"{where} is down: {reason or 'no answer to GET /healthz'}"
    else:
        text = f"{where} is up but not ready: {reason or 'GET /readyz did not answer 200'}"
    if n.get("gossip") and n["gossip"] != "alive":
        text += f" (gossip: {n['gossip']})"
    return text


def problems(st: dict) -> list[str]:
    """Every problem of a status: one line per node that is not ready, then storage."""
    out = [p for p in map(node_problem, st["nodes"]) if p]
    s = st.get("storage") or {}
    if s.get("reachable") is False:
        where = s.get("endpoint") or "as the nodes report it"
        out.append(f"storage ({where}) is unreachable")
    elif s.get("reachable") is None:
        out.append("storage: unknown (no node answered /readyz)")
    return out


def storage_from_nodes(nodes: Sequence[dict]) -> bool | None:
    """Storage as the nodes see it: False if one says unreachable, None if none said anything."""
    seen = [n["ready"]["storage"] for n in nodes
            if isinstance(n.get("ready"), dict) and isinstance(n["ready"].get("storage"), bool)]
    if not seen:
        return None
    return all(seen)


# ---- URLs only ---------------------------------------------------------------------------------------
def nodes_to_probe(members: dict, asked_url: str) -> list[dict]:
    """From ``GET /v1/cluster/members``: every member but those that left on purpose, at its
    advertised HTTP address (the node that answered, at the URL that reached it)."""
    out = []
    for m in members.get("members") or []:
        if m.get("state") == "left":
            continue
        url = asked_url if m.get("id") == members.get("self") else f"http://{m.get('http_addr')}"
        out.append({"id": m.get("id"), "url": url, "gossip": m.get("state")})
    return out


def remote_status(endpoints: Sequence[Endpoint], token: str | None) -> dict:
    """Status of the cluster behind ``endpoints``: every member one of them lists, probed."""
    seen_by, nodes = None, []
    try:
        with Client(endpoints, token=token) as c:
            data = c.get_json("/v1/cluster/members")
            asked = c.nodes()[0]  # the node that answered
        seen_by = data.get("self")
        nodes = nodes_to_probe(data, asked.url)
    except CliError:  # nobody answered, or not a Shoal node: probe what we were given
        nodes = [{"id": ep.id, "url": ep.url, "gossip": None} for ep in endpoints]
    with httpx.Client(timeout=httpx.Timeout(_PROBE_TIMEOUT, connect=2.0)) as http:
        for n in nodes:
            p = probe(http, n["url"])
            n.update(pid=None, running=None, healthz=p.healthz, readyz=p.readyz, ready=p.ready,
                     reason=p.reason, info=p.info)
    storage: dict[str, Any] = {"endpoint": None, "embedded": None, "bucket": None, "pid": None,
                               "reachable": storage_from_nodes(nodes)}
    return {"cluster": None, "urls": [ep.url for ep in endpoints], "seen_by": seen_by,
            "nodes": nodes, "storage": storage}


# ---- text ---------------------------------------------------------------------------------------------
def format_status(st: dict) -> str:
    rows = []
    for n in st["nodes"]:
        info = n.get("info") or {}
        uptime = info.get("uptime") if isinstance(info, dict) else None
        rows.append([n["id"], n["url"], n.get("pid") or "-", _health(n), human_duration(uptime)
                     if isinstance(uptime, (int, float)) else "-"])
    table = format_table(["node", "url", "pid", "health", "uptime"], rows)
    s = st["storage"]
    reach = {True: "reachable", False: "UNREACHABLE", None: "unknown"}[s.get("reachable")]
    if not s.get("endpoint"):  # URLs only: storage as the nodes report it in /readyz
        seen = f" (members as {st['seen_by']} sees them)" if st.get("seen_by") else ""
        return f"{table}\n\nstorage, as the nodes report it: {reach}{seen}"
    where = "embedded " if s.get("embedded") else ""
    pid = f", pid {s['pid']}" if s.get("pid") else ""
    return f"{table}\n\nstorage: {where}{s['endpoint']} bucket {s['bucket']}: {reach}{pid}"


def _health(n: dict) -> str:
    if n["readyz"]:
        return "ready"
    if n["healthz"]:
        return "up, not ready"
    if n.get("running") is None:  # URLs only: no process of ours to look at
        return "down"
    return "not running" if not n["running"] else "starting or hung"
