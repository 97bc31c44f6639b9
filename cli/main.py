"""``shoal``: the command line (argparse). ``main(argv)`` returns the exit code.

Every command takes ``--config PATH`` (default ``$SHOAL_CONFIG`` or ``./cluster.yml``) or
``--url URL[,URL...]`` (default ``$SHOAL_URL``; the rule is in :mod:`cli.target`), and ``--node
ID`` (which node to ask; default the first that answers); read commands take ``--json``. With
URLs only, the token is ``$SHOAL_TOKEN`` and the commands that manage processes refuse.
Expected failures (node down, storage down, bad file, API errors) print ``error: ...`` on
stderr and exit 1, never a traceback. ``shoal wait`` exits 0 ready, 1 failed, 2 timeout;
``shoal status`` exits 1 when a node is not ready or storage is unreachable.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

import httpx

from node.config import Config, ConfigError

from . import health
from .client import Client
from .errors import ApiError, CliError
from .health import format_status
from .launcher import Launcher
from .progress import Progress
from .tables import format_table, human_bytes, human_time
from .target import TOKEN_ENV, Source, choose_source, needs_cluster_file, select_endpoint

__all__ = ["main", "build_parser", "wait_for", "package_version", "select_members",
           "format_status", "WAIT_READY", "WAIT_FAILED", "WAIT_TIMEOUT", "MEMBER_STATES"]

WAIT_READY, WAIT_FAILED, WAIT_TIMEOUT = 0, 1, 2
_TERMINAL_BAD = ("failed", "deleted")
MEMBER_STATES = ("alive", "suspect", "dead", "left")  # membership/messages.py
# commands that start, stop or signal processes on this machine: never with URLs only
PROCESS_COMMANDS = frozenset({"up", "down", "kill", "stop", "restart", "demo", "chaos"})


# ---- parser ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    # The common options work before and after the subcommand: the subparsers' copies use
    # SUPPRESS so they only override the main parser's defaults when given.
    def common(p: argparse.ArgumentParser, default: Any) -> None:
        d = (lambda v: v) if default is None else (lambda v: argparse.SUPPRESS)
        p.add_argument("--config", default=d(None), metavar="PATH",
                       help="cluster.yml (default: $SHOAL_CONFIG or ./cluster.yml)")
        p.add_argument("--url", default=d(None), metavar="URL",
                       help="talk to the node(s) at URL[,URL...] without a cluster.yml "
                            "(default: $SHOAL_URL; token from $SHOAL_TOKEN)")
        p.add_argument("--node", default=d(None), metavar="ID",
                       help="node to ask (default: the first that answers)")
        p.add_argument("--json", action="store_true", default=d(False),
                       help="machine-readable output (read commands)")

    parser = argparse.ArgumentParser(prog="shoal", description="Run and use a Shoal video cluster.")
    common(parser, None)
    parser.add_argument("--version", action="version", version=f"shoal {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def cmd(name: str, func: Callable, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        common(p, argparse.SUPPRESS)
        p.set_defaults(func=func)
        return p

    p = cmd("up", cmd_up, "start the cluster of cluster.yml in the background")
    p.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for readiness")
    p.add_argument("--no-wait", action="store_true", help="return without waiting for /readyz")
    cmd("down", cmd_down, "stop every node, then the embedded storage")
    cmd("status", cmd_status, "nodes, health and storage")
    p = cmd("members", cmd_members, "membership as a node sees it")
    p.add_argument("--state", action="append", choices=MEMBER_STATES,
                   help="only members in this state (repeat for several)")
    cmd("ring", cmd_ring, "the hash ring as a node sees it")
    p = cmd("owner", cmd_owner, "which node owns a video")
    p.add_argument("video")
    p = cmd("upload", cmd_upload, "upload a video file (prints its id on stdout)")
    p.add_argument("file")
    p.add_argument("--resumable", action="store_true", help="tus upload that survives node failures")
    p.add_argument("--idempotency-key", metavar="KEY", help="retry-safe key (default: a random one)")
    p.add_argument("--chunk-size", type=float, default=16.0, metavar="MIB",
                   help="resumable chunk size in MiB (default 16)")
    p.add_argument("--wait", action="store_true", help="then wait until ready or failed")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for --wait")
    p = cmd("videos", cmd_videos, "list videos")
    p.add_argument("--state", help="only videos in this state")
    p.add_argument("--limit", type=int, help="at most this many")
    p.add_argument("--cursor", help="continue a previous listing")
    p = cmd("video", cmd_video, "one video's record")
    p.add_argument("video")
    p = cmd("delete", cmd_delete, "delete a video (its objects are removed; playback is 404)")
    p.add_argument("video")
    p = cmd("wait", cmd_wait, "wait until a video is ready (exit 0), failed (1) or time is up (2)")
    p.add_argument("video")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    cmd("token", cmd_token, "print the bearer token for write requests")
    p = cmd("kill", cmd_kill, "SIGKILL a node (a crash)")
    p.add_argument("target", metavar="node")
    p = cmd("stop", cmd_stop, "stop one node gracefully (SIGTERM: it leaves the cluster)")
    p.add_argument("target", metavar="node")
    p = cmd("restart", cmd_restart, "stop a node if it runs and start it again")
    p.add_argument("target", metavar="node")
    p.add_argument("--timeout", type=float, default=90.0)
    p = cmd("play", cmd_play, "a video's HLS playback URL on every node")
    p.add_argument("video")
    p = cmd("demo", cmd_demo, "start the cluster, upload a generated sample, wait, print the URL")
    p.add_argument("--file", help="upload this file instead of the generated sample")
    p.add_argument("--timeout", type=float, default=600.0)
    from .chaos import register as register_chaos  # `shoal chaos` (cli/chaos/command.py)
    register_chaos(cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in PROCESS_COMMANDS and source(args).remote:
            raise needs_cluster_file(args.command)
        return int(args.func(args) or 0)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `shoal videos | head`: the reader left, nothing to report
        sys.stdout = open(os.devnull, "w")
        return 141


# ---- shared -----------------------------------------------------------------------------------------
def package_version(lookup: Callable[[str], str] = importlib.metadata.version) -> str:
    """The installed ``shoal`` distribution's version (pyproject.toml), or why there is none."""
    try:
        return lookup("shoal")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown: the shoal package is not installed)"


def source(args: argparse.Namespace) -> Source:
    return choose_source(args.url, args.config, os.environ)


def config_path(args: argparse.Namespace) -> Path:
    src = source(args)
    if src.config is None:
        raise needs_cluster_file(args.command)
    return src.config


def load_config(args: argparse.Namespace) -> Config:
    try:
        return Config.load(config_path(args))
    except ConfigError as e:
        raise CliError(f"config: {e}") from None


def launcher(args: argparse.Namespace, out: TextIO | None = None) -> Launcher:
    path = config_path(args)
    if not path.exists():
        raise CliError(f"config: {path}: no such file; give --config PATH, or --url URL "
                       f"(or $SHOAL_URL) for the commands that only talk HTTP")
    return Launcher(path, out=out)


def token_for(launch: Launcher) -> str | None:
    """The launcher's generated token when this machine started the cluster, else $SHOAL_TOKEN."""
    s = launch.existing_secrets()
    return s.token if s else launch.cfg.token()


def client(args: argparse.Namespace) -> Client:
    src = source(args)
    if src.remote:
        return Client(src.urls, node=args.node, token=os.environ.get(TOKEN_ENV) or None,
                      notice=_notice)
    launch = launcher(args)
    return Client(launch.cfg, node=args.node, token=token_for(launch), notice=_notice)


def _notice(text: str) -> None:
    print(f"\nnote: {text}", file=sys.stderr)


def emit_json(data: Any, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(json.dumps(data, indent=2, default=str) + "\n")


def say(text: str) -> None:
    print(text, file=sys.stderr)


# ---- lifecycle commands ----------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    launch = launcher(args, out=sys.stderr)
    started = launch.up(wait=not args.no_wait, timeout=args.timeout)
    if not started:
        say("already running")
    if args.no_wait:
        return 0
    say(f"cluster {launch.cfg.cluster} is ready: " + ", ".join(n.url for n in launch.cfg.nodes))
    print(format_status(launch.status()))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stopped = launcher(args, out=sys.stderr).down()
    say("stopped " + ", ".join(stopped) if stopped else "nothing was running")
    return 0


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


def _end_node(args: argparse.Namespace, how: str) -> int:
    """`shoal kill` (SIGKILL) and `shoal stop` (SIGTERM, graceful leave) of one node."""
    launch = launcher(args) if how == "kill" else launcher(args, out=sys.stderr)
    _known_node(launch, args.target)
    if (launch.kill if how == "kill" else launch.stop)(args.target):
        say(f"{'killed' if how == 'kill' else 'stopped'} {args.target}")
        return 0
    raise CliError(f"node {args.target} is not running (no live process from `shoal up`)")


def cmd_kill(args: argparse.Namespace) -> int:
    return _end_node(args, "kill")


def cmd_stop(args: argparse.Namespace) -> int:
    return _end_node(args, "stop")


def cmd_restart(args: argparse.Namespace) -> int:
    launch = launcher(args, out=sys.stderr)
    _known_node(launch, args.target)
    launch.restart(args.target, timeout=args.timeout)
    say(f"{args.target} is ready at {launch.cfg.node(args.target).url}")
    return 0


def _known_node(launch: Launcher, node_id: str) -> None:
    try:
        launch.cfg.node(node_id)
    except ConfigError as e:
        raise CliError(str(e)) from None


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


# ---- cluster views -----------------------------------------------------------------------------------
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


# ---- videos ----------------------------------------------------------------------------------------
def cmd_upload(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: not a file")
    with client(args) as c:
        progress = Progress(path.stat().st_size, label=f"{path.name} ")
        try:
            if args.resumable:
                rec = c.upload_resumable(path, chunk_size=int(args.chunk_size * 1024 * 1024),
                                         progress=progress)
            else:
                rec = c.upload(path, idempotency_key=args.idempotency_key, progress=progress)
        finally:
            progress.finish()
        code = 0
        if args.wait:
            code, rec = wait_for(c, rec["id"], timeout=args.timeout)
    if args.json:
        emit_json(rec)
    else:
        say(f"uploaded {rec.get('id')}: {rec.get('state')}")
        print(rec.get("id"))
    return code


def cmd_videos(args: argparse.Namespace) -> int:
    with client(args) as c:
        data = c.get_json("/v1/videos", {"state": args.state, "limit": args.limit,
                                         "cursor": args.cursor})
    if args.json:
        emit_json(data)
        return 0
    rows = [[v.get("id"), v.get("state"), v.get("filename"), human_bytes(v.get("size")),
             human_time(v.get("created_at")), v.get("owner")] for v in data.get("videos") or []]
    print(format_table(["id", "state", "filename", "size", "created", "owner"], rows))
    if data.get("next"):
        say(f"more: shoal videos --cursor {data['next']}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """DELETE /v1/videos/<id>: 202 + the record, now deleted (a second delete answers the same)."""
    with client(args) as c:
        try:
            rec = c.request("DELETE", f"/v1/videos/{args.video}", headers=c.auth()).json()
        except ApiError as e:
            if e.status in (401, 403):
                raise CliError(f"{e}: deleting needs the cluster's bearer token (${TOKEN_ENV}, "
                               f"or `shoal token` where the cluster was started)") from None
            raise
        except ValueError:
            raise CliError("DELETE: the node answered something that is not JSON") from None
    if args.json:
        emit_json(rec)
    else:
        print(f"deleted {rec.get('id', args.video)} (state {rec.get('state')})")
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    with client(args) as c:
        rec = c.get_json(f"/v1/videos/{args.video}")
        base = c.nodes()[0].url
    if args.json:
        emit_json(rec)
    else:
        print(format_video(rec, base))
    return 0


def format_video(rec: dict, base_url: str) -> str:
    hls = (rec.get("playback") or {}).get("hls")
    fields = [("id", rec.get("id")), ("state", rec.get("state")), ("filename", rec.get("filename")),
              ("size", human_bytes(rec.get("size"))), ("created", human_time(rec.get("created_at"))),
              ("updated", human_time(rec.get("updated_at"))), ("owner", rec.get("owner")),
              ("attempts", rec.get("attempts")), ("error", rec.get("error")),
              ("progress", f"{100 * rec['progress']:.0f}%" if rec.get("progress") is not None else None),
              ("playback", base_url + hls if hls else None)]
    width = max(len(k) for k, _ in fields)
    out = [f"{k.ljust(width)}  {'-' if v is None else v}" for k, v in fields]
    if rec.get("renditions"):
        out += ["", "renditions:", format_table(
            ["name", "width", "height", "bandwidth"],
            [[r.get("name"), r.get("width"), r.get("height"), r.get("bandwidth")]
             for r in rec["renditions"]])]
    if rec.get("chunks"):
        out += ["", "chunks:", format_table(
            ["unit", "start", "duration", "state", "node", "epoch", "progress"],
            [[c.get("unit"), f"{c.get('start', 0):g}", f"{c.get('duration', 0):g}", c.get("state"),
              c.get("node"), c.get("epoch"), f"{100 * (c.get('progress') or 0):.0f}%"]
             for c in rec["chunks"]])]
    if rec.get("history"):
        out += ["", "history:", format_table(
            ["state", "at", "node", "epoch"],
            [[h.get("state"), human_time(h.get("at")), h.get("node"), h.get("epoch")]
             for h in rec["history"]])]
    return "\n".join(out)


def wait_for(c: Client, video_id: str, *, timeout: float, interval: float = 0.5,
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep,
             on_state: Callable[[str], None] | None = None) -> tuple[int, dict]:
    """Poll until ready/failed or ``timeout``; returns (exit code, last record)."""
    deadline = clock() + timeout
    last_state = None
    rec: dict = {"id": video_id}
    while True:
        rec = c.get_json(f"/v1/videos/{video_id}")
        state = rec.get("state")
        if state != last_state:
            (on_state or (lambda s: say(f"{video_id}: {s}")))(state)
            last_state = state
        if state == "ready":
            return WAIT_READY, rec
        if state in _TERMINAL_BAD:
            return WAIT_FAILED, rec
        if clock() >= deadline:
            return WAIT_TIMEOUT, rec
        sleep(interval)


def cmd_wait(args: argparse.Namespace) -> int:
    with client(args) as c:
        code, rec = wait_for(c, args.video, timeout=args.timeout, interval=args.interval)
    if args.json:
        emit_json(rec)
    if code == WAIT_FAILED:
        say(f"{args.video} is {rec.get('state')}: {rec.get('error') or 'no reason given'}")
    elif code == WAIT_TIMEOUT:
        say(f"{args.video} still {rec.get('state')} after {args.timeout:.0f} s")
    return code


def cmd_play(args: argparse.Namespace) -> int:
    with client(args) as c:
        rec = c.get_json(f"/v1/videos/{args.video}")
        bases = [n.url for n in c.endpoints]  # every node of cluster.yml, or every --url
    hls = (rec.get("playback") or {}).get("hls") or f"/v1/videos/{args.video}/hls/master.m3u8"
    urls = [base + hls for base in bases]
    if args.json:
        emit_json({"id": args.video, "state": rec.get("state"), "urls": urls})
        return 0
    if rec.get("state") != "ready":
        say(f"note: {args.video} is {rec.get('state')}; playback answers 409 until it is ready")
    for url in urls:
        print(url)
    say("play with e.g. `ffplay URL`, VLC, or any HLS player (every node serves the same bytes)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import make_sample

    launch = launcher(args, out=sys.stderr)
    t0 = time.monotonic()
    launch.up(wait=True)
    say(f"cluster ready in {time.monotonic() - t0:.1f} s: " + ", ".join(launch.cfg.node_ids))
    if args.file:
        sample = Path(args.file)
    else:
        # 720p so the whole default ladder (360p, 480p, 720p) is made: renditions never upscale.
        sample = make_sample(launch.state_dir / "demo" / "sample-720p.mp4", size="1280x720")
        say(f"sample video: {sample} ({human_bytes(sample.stat().st_size)}, 10 s 1280x720)")
    with Client(launch.cfg, node=args.node, token=token_for(launch)) as c:
        progress = Progress(sample.stat().st_size, label="upload ")
        try:
            rec = c.upload(sample, progress=progress)
        finally:
            progress.finish()
        t1 = time.monotonic()
        code, rec = wait_for(c, rec["id"], timeout=args.timeout)
        base = c.nodes()[0].url
    if code == WAIT_FAILED:
        raise CliError(f"video {rec.get('id')} failed: {rec.get('error')}")
    if code == WAIT_TIMEOUT:
        raise CliError(f"video {rec.get('id')} not ready after {args.timeout:.0f} s "
                       f"(state {rec.get('state')}); see `shoal status` and {launch.state_dir}/logs")
    say(f"processed in {time.monotonic() - t1:.1f} s")
    print(format_video(rec, base))
    hls = rec.get("playback", {}).get("hls") or f"/v1/videos/{rec['id']}/hls/master.m3u8"
    print(f"\nplayback URL: {base}{hls}")
    say(f"every node serves it: `shoal play {rec['id']}`; stop the cluster with `shoal down`")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
