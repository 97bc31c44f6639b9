"""``shoal``: the command line (argparse). ``main(argv)`` returns the exit code.

Every command takes ``--config PATH`` (default ``$SHOAL_CONFIG`` or ``./cluster.yml``) and
``--node ID`` (which node to ask; default the first that answers); read commands take ``--json``.
Expected failures (node down, storage down, bad file, API errors) print ``error: ...`` on
stderr and exit 1, never a traceback. ``shoal wait`` exits 0 ready, 1 failed, 2 timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from node.config import Config, ConfigError

from .client import Client
from .errors import CliError
from .launcher import Launcher
from .progress import Progress
from .tables import format_table, human_bytes, human_duration, human_time

__all__ = ["main", "build_parser", "wait_for", "WAIT_READY", "WAIT_FAILED", "WAIT_TIMEOUT"]

WAIT_READY, WAIT_FAILED, WAIT_TIMEOUT = 0, 1, 2
_TERMINAL_BAD = ("failed", "deleted")


# ---- parser ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    # The common options work before and after the subcommand: the subparsers' copies use
    # SUPPRESS so they only override the main parser's defaults when given.
    def common(p: argparse.ArgumentParser, default: Any) -> None:
        d = (lambda v: v) if default is None else (lambda v: argparse.SUPPRESS)
        p.add_argument("--config", default=d(None), metavar="PATH",
                       help="cluster.yml (default: $SHOAL_CONFIG or ./cluster.yml)")
        p.add_argument("--node", default=d(None), metavar="ID",
                       help="node to ask (default: the first that answers)")
        p.add_argument("--json", action="store_true", default=d(False),
                       help="machine-readable output (read commands)")

    parser = argparse.ArgumentParser(prog="shoal", description="Run and use a Shoal video cluster.")
    common(parser, None)
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
    cmd("members", cmd_members, "membership as a node sees it")
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
def config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("SHOAL_CONFIG") or "cluster.yml")


def load_config(args: argparse.Namespace) -> Config:
    try:
        return Config.load(config_path(args))
    except ConfigError as e:
        raise CliError(f"config: {e}") from None


def launcher(args: argparse.Namespace, out: TextIO | None = None) -> Launcher:
    return Launcher(config_path(args), out=out)


def token_for(launch: Launcher) -> str | None:
    """The launcher's generated token when this machine started the cluster, else $SHOAL_TOKEN."""
    s = launch.existing_secrets()
    return s.token if s else launch.cfg.token()


def client(args: argparse.Namespace) -> Client:
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
    st = launcher(args).status()
    if args.json:
        emit_json(st)
    else:
        print(format_status(st))
    return 0


def format_status(st: dict) -> str:
    rows = []
    for n in st["nodes"]:
        info = n.get("info") or {}
        uptime = info.get("uptime") if isinstance(info, dict) else None
        rows.append([n["id"], n["url"], n["pid"] or "-", _health(n), human_duration(uptime)
                     if isinstance(uptime, (int, float)) else "-"])
    table = format_table(["node", "url", "pid", "health", "uptime"], rows)
    s = st["storage"]
    where = "embedded " if s["embedded"] else ""
    pid = f", pid {s['pid']}" if s.get("pid") else ""
    reach = "reachable" if s["reachable"] else "UNREACHABLE"
    return f"{table}\n\nstorage: {where}{s['endpoint']} bucket {s['bucket']}: {reach}{pid}"


def _health(n: dict) -> str:
    if n["readyz"]:
        return "ready"
    if n["healthz"]:
        return "up, not ready"
    return "not running" if not n["running"] else "starting or hung"


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
    if args.json:
        emit_json(data)
        return 0
    members = data.get("members") or []
    rows = [[m.get("id"), m.get("state"), m.get("incarnation"), m.get("http_addr"),
             m.get("gossip_addr"), human_time(m.get("since"))] for m in members]
    print(f"as seen by {data.get('self', '?')}:")
    print(format_table(["id", "state", "incarnation", "http", "gossip", "since"], rows))
    return 0


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
              ("playback", base_url + hls if hls else None)]
    width = max(len(k) for k, _ in fields)
    out = [f"{k.ljust(width)}  {'-' if v is None else v}" for k, v in fields]
    if rec.get("renditions"):
        out += ["", "renditions:", format_table(
            ["name", "width", "height", "bandwidth"],
            [[r.get("name"), r.get("width"), r.get("height"), r.get("bandwidth")]
             for r in rec["renditions"]])]
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
    launch = launcher(args)
    with client(args) as c:
        rec = c.get_json(f"/v1/videos/{args.video}")
    hls = (rec.get("playback") or {}).get("hls") or f"/v1/videos/{args.video}/hls/master.m3u8"
    urls = [n.url + hls for n in launch.cfg.nodes]
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
