"""``shoal upload | videos | video | delete | wait | play``: the commands about videos, over HTTP
only (they work with ``--url`` alone), and :func:`wait_for`, the one polling loop.

Invariant: :func:`wait_for` is bounded by its ``timeout`` and returns one of ``WAIT_READY``,
``WAIT_FAILED``, ``WAIT_TIMEOUT``, which ``shoal wait`` uses as its exit code.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

from ..client import Client
from ..connect import client, emit_json, say
from ..errors import ApiError, CliError
from ..progress import Progress
from ..tables import format_table, human_bytes, human_time
from ..target import TOKEN_ENV

__all__ = ["register", "wait_for", "format_video", "WAIT_READY", "WAIT_FAILED", "WAIT_TIMEOUT"]

WAIT_READY, WAIT_FAILED, WAIT_TIMEOUT = 0, 1, 2
_TERMINAL_BAD = ("failed", "deleted")


def register(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the video commands through the ``shoal`` parser's ``cmd(name, func, help)`` helper."""
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
    p = cmd("play", cmd_play, "a video's HLS playback URL on every node")
    p.add_argument("video")


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
