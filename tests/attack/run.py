"""The attack runner: one function per kind of request, and :func:`run_case`.

:func:`run_case` sends one case of attack.cases.CASES to the prepared target (attack.target),
checks its answer, then what every case must leave behind (nothing leaked, nothing lost, every
node healthy).  A node a case took down is restarted before the failure is raised.
"""

from __future__ import annotations

import random

import httpx

from . import wire
from .cases import Case, Hop, Http, Raw
from .checks import Answer
from .scenarios import SCENARIOS
from .target import (Target, check_answer, check_every_node_healthy, check_nothing_leaked, check_nothing_lost,
                     check_stream, hop_request, prepare)

__all__ = ["run_case", "revive", "prepare", "SCENARIOS"]

# ---- kinds of requests -----------------------------------------------------------------------------

def run_raw(t: Target, case: Case, req: Raw) -> None:
    text = t.fill(req.data)
    data = random.Random(case.name).randbytes(4096) if text == "@RANDOM4096@" else text.encode("latin-1")
    if req.pieces > 1:
        step = max(1, len(data) // req.pieces)
        pieces = [data[i:i + step] for i in range(0, len(data), step)]
    else:
        pieces = [data]
    s = wire.exchange(t.http_port(req.node), pieces, pause=req.pause)
    for a in s.answers:
        t.note(case.name, a)
    check_stream(s, case.expect, case.name)


def _auth(t: Target, who: str) -> dict[str, str]:
    return {"none": {}, "token": {"Authorization": f"Bearer {t.cluster.token}"},
            "wrong": {"Authorization": "Bearer not-the-token"}}[who]


def run_http(t: Target, case: Case, req: Http) -> None:
    headers = {**_auth(t, req.auth), **dict(req.headers)}
    r = httpx.request(req.method, t.url(req.node) + t.fill(req.path), headers=headers, content=req.body or None,
                      timeout=20)
    check_answer(t.note(case.name, Answer(r.status_code, dict(r.headers), r.content)), case.expect, case.name)


def run_hop(t: Target, case: Case, req: Hop) -> None:
    s = hop_request(t, "/v1/internal/objects/" + t.fill(req.path), req.sign, http10=req.http10)
    for a in s.answers:
        t.note(case.name, a)
    check_stream(s, case.expect, case.name)


def run_case(t: Target, case: Case) -> None:
    """Send ``case`` and check everything; a node the case took down is restarted before the
    failure is raised, so the next case starts from a whole cluster again."""
    try:
        _run_and_check(t, case)
    except Exception:
        revive(t)
        raise


def revive(t: Target) -> list[str]:
    """Restart every node (and the storage server) that is dead or does not answer /healthz."""
    revived = []
    c = t.cluster
    if c.pid("storage") is None:
        c.start_storage()
        revived.append("storage")
    for node in c.node_ids:
        try:
            ok = c.pid(node) is not None and httpx.get(t.url(node) + "/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            ok = False
        if not ok:
            c.restart(node)
            revived.append(node)
    return revived


def _run_and_check(t: Target, case: Case) -> None:
    t.seen.clear()
    req = case.request
    if isinstance(req, Raw):
        run_raw(t, case, req)
    elif isinstance(req, Http):
        run_http(t, case, req)
    elif isinstance(req, Hop):
        run_hop(t, case, req)
    else:
        SCENARIOS[req.fn](t, case, *req.args)
    check_nothing_leaked(t, case.name)
    check_nothing_lost(t, [t.cluster.node_ids[t.cases_run % len(t.cluster.node_ids)]])
    t.cases_run += 1
    check_every_node_healthy(t)
