"""Segment GET throughput and latency: Shoal warm / cold / through a non-owner, S3 direct, nginx.

    .venv/bin/python bench/streaming/run.py [--seconds 20] [--connections 64] [--out bench/streaming/results.md]

One run: starts a 3-node cluster with embedded S3 (tests/harness.py), uploads a generated 720p
clip, waits until it is ready, then loads 127.0.0.1 with wrk (Debian's; `apt-get install wrk`)
for each scenario in turn, the same segment files in every one:

- warm:      the owner, a few segments that fit its cache (every request a hit)
- cold:      the owner, every segment of every rendition in turn, with a cache smaller than the
             set (LRU thrash: mostly misses; concurrent misses of one key coalesce)
- non-owner: another node, the warm set (each request is one hop to the owner's cache)
- s3:        the S3 server (SeaweedFS) directly, presigned GETs of the same objects
- nginx:     Debian's nginx, one worker, sendfile, the same files from local disk

Writes a markdown table (requests/s, MB/s, p50, p99, errors) to --out.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import httpx  # noqa: E402
import m3u8  # noqa: E402

import media  # noqa: E402
from harness import Cluster, pick_ports, upload, wait_state  # noqa: E402

LADDER = [{"name": "360p", "height": 360, "video_kbps": 800, "audio_kbps": 96},
          {"name": "480p", "height": 480, "video_kbps": 1400, "audio_kbps": 128},
          {"name": "720p", "height": 720, "video_kbps": 2800, "audio_kbps": 128}]
CACHE_BYTES = 4 * 1024 * 1024
WARM_SEGMENTS = 3

LUA = """
paths = {%s}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1])
end
"""


def parse_wrk(text: str) -> dict:
    def ms(v: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", v)
        n, unit = float(m.group(1)), m.group(2)
        return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n

    def size(v: str) -> float:
        m = re.match(r"([\d.]+)([KMG]?B)", v)
        return float(m.group(1)) * {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}[m.group(2)]

    out = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
           "mbps": size(re.search(r"Transfer/sec:\s+(\S+)", text).group(1)) / 1e6,
           "p50": ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1)),
           "p99": ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1)),
           "requests": int(re.search(r"(\d+) requests in", text).group(1))}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["errors"] = (int(m.group(1)) if m else 0) + (sum(map(int, e.groups())) if e else 0)
    return out


def wrk(base: str, paths: list[str], seconds: int, connections: int, tmp: Path) -> dict:
    script = tmp / "paths.lua"
    script.write_text(LUA % ", ".join(f'"{p}"' for p in paths))
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s",
           "-s", str(script), base]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if p.returncode != 0:
        raise RuntimeError(f"wrk failed: {p.stderr}")
    return parse_wrk(p.stdout)


def start_nginx(root: Path, tmp: Path) -> tuple[subprocess.Popen, int]:
    port = pick_ports(1)[0]
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  types {{ video/mp2t ts; }}
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/").status_code in (200, 403, 404):
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("nginx did not start")


def cache(c: Cluster, node: str) -> dict:
    return httpx.get(c.url(node) + "/v1/node").json()["cache"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--out", default=str(REPO / "bench" / "streaming" / "results.md"))
    ap.add_argument("--access-log", choices=("on", "off"), default="on",
                    help="the nodes' per-request JSON line (cluster.yml access_log; default on, as "
                         "a node runs; nginx runs with access_log off, its best)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="shoal-bench-streaming-"))
    tmp.chmod(0o755)  # nginx workers run as nobody
    rows: list[tuple[str, dict, str]] = []
    nginx_proc = None
    c = Cluster(tmp / "cluster", 3, {"ladder": LADDER, "cache": {"max_bytes": CACHE_BYTES},
                                     "access_log": args.access_log == "on"})
    try:
        src = media.make_video(tmp / "src.mp4", seconds=24, width=1280, height=720)
        vid = upload(c, "n1", src).json()["id"]
        rec = wait_state(c, "n1", vid, "ready", timeout=600)
        owner = httpx.get(c.url("n1") + f"/v1/cluster/owner/{vid}").json()["owner"]
        other = next(n for n in c.node_ids if n != owner)
        hls = f"/v1/videos/{vid}/hls/"
        master = m3u8.loads(httpx.get(c.url(owner) + hls + "master.m3u8").text)
        all_segs: list[str] = []
        for pl in master.playlists:
            folder = pl.uri.rsplit("/", 1)[0]
            all_segs += [f"{folder}/{s.uri}" for s in m3u8.loads(httpx.get(c.url(owner) + hls + pl.uri).text).segments]
        top = master.playlists[-1].uri.rsplit("/", 1)[0]
        warm = [s for s in all_segs if s.startswith(top + "/")][:WARM_SEGMENTS]
        sizes = {s: len(httpx.get(c.url(owner) + hls + s).content) for s in all_segs}
        assert sum(sizes[s] for s in warm) <= CACHE_BYTES < sum(sizes.values())
        print(f"video {vid}: {len(all_segs)} segments, {sum(sizes.values()) / 1e6:.1f} MB; warm set "
              f"{sum(sizes[s] for s in warm) / 1e6:.2f} MB; owner {owner}", flush=True)

        # copies for nginx, and presigned URLs for S3, of the same objects
        import boto3
        s3 = boto3.client("s3", endpoint_url=c.s3_endpoint, aws_access_key_id=c.access_key,
                          aws_secret_access_key=c.secret_key, region_name="us-east-1")
        prefix = f"videos/{vid}/out/{rec['ready_epoch']}/" if rec.get("ready_epoch") is not None else None
        if prefix is None:
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=c.bucket, Prefix=f"videos/{vid}/out/")["Contents"]]
            prefix = keys[0].split("/out/")[0] + "/out/" + keys[0].split("/out/")[1].split("/")[0] + "/"
        www = tmp / "www"
        for s in all_segs:
            (www / s).parent.mkdir(parents=True, exist_ok=True)
            (www / s).write_bytes(s3.get_object(Bucket=c.bucket, Key=prefix + s)["Body"].read())
        presigned = [s3.generate_presigned_url("get_object", Params={"Bucket": c.bucket, "Key": prefix + s},
                                               ExpiresIn=3600).split(c.s3_endpoint, 1)[1] for s in warm]
        nginx_proc, nginx_port = start_nginx(www, tmp)

        def run(name: str, base: str, paths: list[str], node: str | None = None) -> None:
            before = {n: cache(c, n) for n in c.node_ids}
            r = wrk(base, paths, args.seconds, args.connections, tmp)
            note = ""
            if node:
                after = {n: cache(c, n) for n in c.node_ids}
                d = {k: after[owner][k] - before[owner][k] for k in ("hits", "misses", "coalesced", "storage_reads")}
                note = (f"owner: {d['hits']} hits, {d['misses']} misses, {d['coalesced']} coalesced, "
                        f"{d['storage_reads']} storage reads")
                if node != owner:
                    hops = after[node]["owner_hops"] - before[node]["owner_hops"]
                    falls = after[node]["hop_fallbacks"] - before[node]["hop_fallbacks"]
                    note += f"; {node}: {hops} hops, {falls} fallbacks"
            rows.append((name, r, note))
            print(f"{name:10s} {r['rps']:9.0f} req/s {r['mbps']:8.1f} MB/s p50 {r['p50']:7.2f} ms "
                  f"p99 {r['p99']:7.2f} ms errors {r['errors']}  {note}", flush=True)

        for s in warm:  # fill the owner's cache
            httpx.get(c.url(owner) + hls + s)
        run("warm", c.url(owner), [hls + s for s in warm], owner)
        run("cold", c.url(owner), [hls + s for s in all_segs], owner)
        for s in warm:
            httpx.get(c.url(owner) + hls + s)
        run("non-owner", c.url(other), [hls + s for s in warm], other)
        run("s3 direct", c.s3_endpoint, presigned)
        run("nginx", f"http://127.0.0.1:{nginx_port}", ["/" + s for s in warm])
    finally:
        if nginx_proc is not None:
            os.killpg(nginx_proc.pid, signal.SIGTERM)
            nginx_proc.wait(10)
        c.close()

    by = {name: r for name, r, _ in rows}
    cpus = os.cpu_count()
    lines = [
        "# Streaming benchmark: segment GETs", "",
        f"Command: `.venv/bin/python bench/streaming/run.py --seconds {args.seconds} "
        f"--connections {args.connections} --access-log {args.access_log}`", "",
        f"Machine: {platform.machine()}, {cpus} CPUs, Python {platform.python_version()}; load generator "
        f"wrk (2 threads, {args.connections} connections, {args.seconds} s per row) on the same machine, "
        "127.0.0.1. nginx: 1 worker, sendfile, access_log off. Shoal: one node process per node, "
        f"access log {args.access_log}, "
        f"cache {CACHE_BYTES // 1024 // 1024} MiB. The same segment files in every row "
        f"(warm set: {WARM_SEGMENTS} 720p segments; cold: all {len(all_segs)} segments of 3 renditions).", "",
        "| scenario | requests/s | MB/s | p50 ms | p99 ms | errors | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, r, note in rows:
        lines.append(f"| {name} | {r['rps']:.0f} | {r['mbps']:.1f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                     f"{r['errors']} | {note} |")
    if "warm" in by and "nginx" in by and "s3 direct" in by:
        w = by["warm"]
        lines += ["", f"Warm-cache node vs nginx: {w['mbps'] / by['nginx']['mbps']:.2f}x throughput "
                      f"(goal >= 0.5x); vs S3 direct: {w['mbps'] / by['s3 direct']['mbps']:.2f}x (goal >= 1.0x); "
                      f"p99 {w['p99']:.1f} ms (goal < 50 ms)."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
