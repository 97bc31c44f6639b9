"""Processing benchmark: one video processed in one ffmpeg run vs in chunks, undisturbed and with a
node killed at 80% of the undisturbed processing time, side by side in one run; and a bare ffmpeg
run of the same ladder on the same file.

    .venv/bin/python bench/processing/run.py [--seconds 120] [--height 720] [--chunk-segments 15]

Each case runs on a fresh real 3-node cluster (embedded S3, `profile: local`, the default
ladder cut at the source height, preset veryfast): upload the source, then measure
upload-to-ready and processing (ready minus the upload's answer).  The killed cases SIGKILL, at
0.8 x the undisturbed processing time of the same path: for one run, the video's lease holder;
for chunks, a node holding a unit that is not the video's owner (else the owner).  Spread: which
node committed each unit, and each unit's claim-to-commit seconds from the nodes' logs.
Prints a Markdown table (paste it into docs/benchmarks.md with the machine's state).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import media  # noqa: E402
from harness import Cluster, upload  # noqa: E402
from node.config import DEFAULT_LADDER  # noqa: E402
from node.process import ffmpeg_command, plan_ladder, probe  # noqa: E402


def wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError(what)


def record(c: Cluster, vid: str) -> dict:
    for n in c.node_ids:
        try:
            return httpx.get(c.url(n) + f"/v1/videos/{vid}", timeout=5).json()
        except httpx.HTTPError:
            continue
    return {}


def bare_ffmpeg(src: Path, out: Path) -> float:
    p = probe(src)
    cmd = ffmpeg_command(src, out, plan_ladder(p, DEFAULT_LADDER), segment_seconds=2, preset="veryfast",
                         threads=0, has_audio=p.has_audio, video_stream=p.video_stream,
                         audio_stream=p.audio_stream, input_format=p.container or None)
    for r in plan_ladder(p, DEFAULT_LADDER):
        (out / r.name).mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.monotonic() - t0


def one_case(base: Path, src: Path, *, chunked: bool, chunk_segments: int,
             kill_after: float | None) -> dict:
    overrides = {"processing": {"chunked": chunked, "chunk_segments": chunk_segments}}
    with Cluster(base, 3, overrides) as c:
        wait(lambda: all(len(httpx.get(c.url(n) + "/v1/cluster/members").json()["members"]) == 3
                         for n in c.node_ids), 60, "members")
        t0 = time.monotonic()
        vid = upload(c, "n1", src, timeout=600).json()["id"]
        t_up = time.monotonic()
        killed = None
        if kill_after is not None:
            time.sleep(max(0.0, kill_after))
            rec = record(c, vid)
            owner = (rec.get("history") or [{}])[-1].get("node")
            holders = [ch["node"] for ch in rec.get("chunks") or []
                       if ch["state"] == "claimed" and ch["node"] != owner]
            killed = holders[0] if holders else next(
                (h["node"] for h in reversed(rec.get("history") or []) if h["state"] == "processing"), "n1")
            c.kill(killed)
        rec = wait(lambda: (r := record(c, vid)).get("state") in ("ready", "failed") and r, 3600, "ready")
        t_ready = time.monotonic()
        units = Counter(ch["node"] for ch in rec.get("chunks") or [])
        redone = sorted(ch["unit"] for ch in rec.get("chunks") or [] if ch["epoch"] > 1)
        unit_seconds: dict[str, list[float]] = {}
        for n in c.node_ids:
            claims = {}
            for e in c.log_lines(n):
                if e.get("video") != vid:
                    continue
                if e["event"] == "chunk_claimed":
                    claims[e["unit"]] = e["ts"]
                elif e["event"] == "chunk_committed" and e["unit"] in claims:
                    unit_seconds.setdefault(n, []).append(e["ts"] - claims[e["unit"]])
        return {"state": rec["state"], "upload": t_up - t0, "processing": t_ready - t_up,
                "total": t_ready - t0, "killed": killed, "units_by_node": dict(units),
                "redone": redone, "unit_seconds": unit_seconds, "epoch": rec.get("epoch")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--chunk-segments", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-processing-") as tmp:
        base = Path(tmp)
        width = args.height * 16 // 9 // 2 * 2
        src = media.make_video(base / "src.mp4", seconds=args.seconds, width=width, height=args.height)
        rows = {"bare ffmpeg": {"processing": bare_ffmpeg(src, base / "bare")}}
        for name, chunked in (("one run", False), ("chunks", True)):
            calm = one_case(base / f"{name}-calm", src, chunked=chunked,
                            chunk_segments=args.chunk_segments, kill_after=None)
            rows[f"{name}, undisturbed"] = calm
            rows[f"{name}, kill -9 at 80%"] = one_case(
                base / f"{name}-kill", src, chunked=chunked, chunk_segments=args.chunk_segments,
                kill_after=0.8 * calm["processing"])
    bare = rows["bare ffmpeg"]["processing"]
    print(f"source: {args.seconds} s {width}x{args.height}, chunks of {args.chunk_segments} segments\n")
    print("| case | upload s | processing s | upload-to-ready s | processing / bare ffmpeg | "
          "killed | redone units | units by node | unit claim-to-commit s by node |")
    print("|---|---:|---:|---:|---:|---|---|---|---|")
    for name, r in rows.items():
        secs = {n: round(sum(v) / len(v), 1) for n, v in (r.get("unit_seconds") or {}).items()}
        print(f"| {name} | {r.get('upload', 0):.1f} | {r['processing']:.1f} | {r.get('total', 0):.1f} | "
              f"{r['processing'] / bare:.2f} | {r.get('killed') or '-'} | {', '.join(r.get('redone') or []) or '-'} | "
              f"{r.get('units_by_node') or '-'} | {secs or '-'} |")
    for path in ("one run", "chunks"):
        calm, kill = rows[f"{path}, undisturbed"], rows[f"{path}, kill -9 at 80%"]
        print(f"\n{path}: killed / undisturbed upload-to-ready = {kill['total'] / calm['total']:.2f}")
    print(f"chunks / one run, undisturbed upload-to-ready = "
          f"{rows['chunks, undisturbed']['total'] / rows['one run, undisturbed']['total']:.2f}")


if __name__ == "__main__":
    main()
