"""``shoal status | members | ring | owner | token``: the cluster as its nodes see it, and the
token to write to it.  They work with a cluster.yml or with ``--url`` alone.

Invariant: ``shoal status`` exits ``health.STATUS_OK`` only when every node asked answers
/healthz and /readyz with 200 and storage answers (cli.health decides, this module prints).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, TextIO

import httpx

from node.config import Config, ConfigError, effective_yaml

from .. import health
from ..connect import client, emit_json, launcher, say, source, token_for
from ..errors import CliError
from ..health import format_status
from ..tables import format_table, human_time
from ..target import CONFIG_ENV, TOKEN_ENV, select_endpoint

__all__ = ["register", "select_members", "format_mapping", "MEMBER_STATES"]

MEMBER_STATES = ("alive", "suspect", "dead", "left")  # membership/messages.py


def register(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the cluster commands through the ``shoal`` parser's ``cmd(name, func, help)`` helper."""
    cmd("status", cmd_status, "nodes, health and storage")
    p = cmd("members", cmd_members, "membership as a node sees it")
    p.add_argument("--state", action="append", choices=MEMBER_STATES,
                   help="only members in this state (repeat for several)")
    cmd("ring", cmd_ring, "the hash ring as a node sees it")
    p = cmd("owner", cmd_owner, "which node owns a video")
    p.add_argument("video")
    cmd("token", cmd_token, "print the bearer token for write requests")
    p = cmd("config", cmd_config, "check cluster.yml: print the effective config (exit 0) "
                                  "or every error with its path (exit 2)")
    p.add_argument("action", choices=("check",))


def cmd_status(args: argparse.Namespace) -> int:
    """Exit 0 when every node answers /healthz and /readyz with 200 and storage answers, else 1."""
    src = source(args)
    if src.remote:
        token = os.environ.get(TOKEN_ENV) or None
        asked = src.urls if args.node is None else (select_endpoint(src.urls, args.node),)
        st = health.remote_status(asked, token)
    else:
        with httpx.Client(timeout=2.0) as http:
            st = health.explain(launcher(args).status(), http)
    found = health.problems(st)
    if args.json:
        emit_json(dict(st, problems=found))
    else:
        print(format_status(st))
    for p in found:
        say(f"error: {p}")
    return health.STATUS_DEGRADED if found else health.STATUS_OK


def cmd_token(args: argparse.Namespace) -> int:
    if source(args).remote:
        token = os.environ.get(TOKEN_ENV)
        if not token:
            raise CliError(f"no token: with --url, set ${TOKEN_ENV}")
    else:
        launch = launcher(args)
        token = token_for(launch)
        if not token:
            raise CliError(f"no token: run `shoal up` first, or set ${launch.cfg.auth.token_env}")
    if args.json:
        emit_json({"token": token})
    else:
        print(token)
    return 0


def cmd_members(args: argparse.Namespace) -> int:
    with client(args) as c:
        data = c.get_json("/v1/cluster/members")
    members = select_members(data.get("members") or [], args.state)
    if args.json:
        emit_json(dict(data, members=members))
        return 0
    if args.state and not members:
        say(f"no member is {' or '.join(args.state)} as {data.get('self', '?')} sees it")
    rows = [[m.get("id"), m.get("state"), m.get("incarnation"), m.get("http_addr"),
             m.get("gossip_addr"), human_time(m.get("since"))] for m in members]
    print(f"as seen by {data.get('self', '?')}:")
    print(format_table(["id", "state", "incarnation", "http", "gossip", "since"], rows))
    return 0


def select_members(members: list[dict], states: list[str] | None) -> list[dict]:
    """The members in one of ``states`` (all when None or empty), in the node's order."""
    if not states:
        return list(members)
    return [m for m in members if m.get("state") in states]


def cmd_ring(args: argparse.Namespace) -> int:
    with client(args) as c:
        data = c.get_json("/v1/cluster/ring")
    if args.json:
        emit_json(data)
    else:
        print(format_mapping(data))
    return 0


def cmd_owner(args: argparse.Namespace) -> int:
    with client(args) as c:
        data = c.get_json(f"/v1/cluster/owner/{args.video}")
    if args.json:
        emit_json(data)
    else:
        print(f"owner:      {data.get('owner')}")
        print(f"preference: {', '.join(map(str, data.get('preference') or []))}")
        if "state" in data:
            lease = data.get("lease") or {}
            holder = lease.get("holder", "-")
            expires = f" (lease expires {human_time(lease['expires'])})" if lease.get("expires") else ""
            print(f"state:      {data['state']}, epoch {data.get('epoch')}")
            print(f"lease:      {holder}{expires}")
        print(f"ring:       version {data.get('ring_version')}, as seen by {args.node or 'the first node answering'}")
    return 0


def format_mapping(data: Any, indent: int = 0) -> str:
    """A nested JSON value as indented ``key: value`` lines (for views whose shape may grow)."""
    pad = "  " * indent
    if isinstance(data, dict):
        lines = []
        for k, v in data.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.append(format_mapping(v, indent + 1))
            else:
                lines.append(f"{pad}{k}: {json.dumps(v) if not isinstance(v, str) else v}")
        return "\n".join(lines)
    if isinstance(data, list):
        if all(not isinstance(v, (dict, list)) for v in data):
            return pad + ", ".join(map(str, data))
        return "\n".join(pad + "- " + format_mapping(v, indent + 1).lstrip() for v in data)
    return pad + str(data)


def cmd_config(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``config check``: the file the node would read (``--config``, ``$SHOAL_CONFIG`` or
    ``./cluster.yml``, never a URL) as the effective YAML, or every problem; exit 0 or 2."""
    path = Path(args.config or os.environ.get(CONFIG_ENV) or "cluster.yml")
    try:
        cfg = Config.load(path)
    except ConfigError as e:
        print(f"{path}: {len(e.problems)} problem{'s' if len(e.problems) != 1 else ''}",
              file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    if args.json:
        emit_json(cfg.effective(), out)
    else:
        (out or sys.stdout).write(f"# effective configuration of {path}\n" + effective_yaml(cfg))
    return 0
