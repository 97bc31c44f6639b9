"""Upload-to-ready and playback on the lab vs on 127.0.0.1, side by side in one run (issue 13's
goal "the same upload-to-ready and playback figures on the lab as on 127.0.0.1, within 20%").

    .venv/bin/python bench/lab/paths.py [--rounds 2] [--uploads 3] [--clients 8] [--seconds 8]
                                        [--quick] [--md bench/lab/paths_results.md]

As root (the lab makes network namespaces).  Two clusters, built once and both kept up for the
whole run, with the same settings (``OVERRIDES``: the default ladder written out, the default
512 MiB segment cache, seeds n1 n2, profile local):

- **local**: 3 node processes on 127.0.0.1 and the embedded S3 (tests/harness.py ``Cluster``);
- **lab**: 3 hosts of ``shoal lab`` (cli/lab ``Lab``): one node per network namespace on a bridge,
  distributed SeaweedFS (master, filer, S3 gateway, 3 volume servers, replication 001).

The client is this process in the machine's own namespace (127.0.0.1 / over the lab bridge).
One source for both: a ``--source-seconds`` 640x360 testsrc2 + sine clip (tests/media.py).
First ``--warmup`` untimed uploads per side (bucket, weed volume growth).  Then each round
measures both sides in turn, the order alternating (local, lab; then lab, local; ...) so machine
drift cancels; per side and round:

1. **uploads**: ``--uploads`` one-shot ``POST /v1/videos`` of the source, to n1, n2, n3 in turn,
   each polled (``GET /v1/videos/<id>`` on the node it went to, every 0.1 s) until ``ready``
   before the next: upload = the POST; upload-to-ready = POST start until the poll sees ready;
   split by the record's ``history`` (node clocks = this machine's) into wait (POST end until the
   ``processing`` claim) and processing (claim until ``ready``).
2. **cold pass**: every video of the round, master + every media playlist + every segment, each
   object GET once, rotating over [owner, other, other] (1/3 owner reads, 2/3 one hop): the
   first fetch of each object in the cluster (the owner's cache misses, reads storage).
3. **warm sequential**: from n1, n2, n3 in turn, every video: master, media playlists, segments.
4. **warm concurrent**: ``--clients`` threads (one keep-alive connection each) cycling over every
   (node, segment) pair, from different offsets, for ``--seconds``.
5. **path probes** (for the why): ``/healthz`` round trips; S3 PUT/GET of 1 MiB straight to each
   side's S3 endpoint; CPU-seconds of the storage and node processes during the side's turn,
   of the other (idle) side's processes, and the machine's busy CPU share (everyone's).

Latency = one GET, request sent until the body is read (httpx), per segment.  Figures pool every
round's samples per side.  Ratio = lab / local; the verdict "within 20%" is |lab/local - 1| <= 0.20
(for latencies and times lower is better, for requests/s and MB/s higher; the band is the same).
At the end: stored ``.dat`` bytes per logical S3 byte on each side (replication, measured).

Both clusters are always torn down (``finally``; the lab with ``Lab.down``).  Writes Markdown to
``--md`` and prints it.  ``--quick``: 1 round, 1 upload per side, no warm-up, 3 s of concurrent
playback.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import httpx  # noqa: E402

MIB = 1024 * 1024
TOLERANCE = 0.20
POLL = 0.1
READY_TIMEOUT = 300.0
WIDTH, HEIGHT = 640, 360


# ---- pure helpers (tests/unit/bench/test_lab_paths_stats.py) -------------------------------------
def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks (numpy's
    default); NaN for no samples."""
    if not samples:
        return float("nan")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q}: 0..100")
    s = sorted(samples)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def ratio(lab: float, local: float) -> float:
    """lab / local; NaN when either is missing or local is 0."""
    if local is None or lab is None or local != local or lab != lab or local == 0:
        return float("nan")
    return lab / local


def within(r: float, tolerance: float = TOLERANCE) -> bool | None:
    """|r - 1| <= tolerance; None for a NaN ratio (no verdict)."""
    if r != r:
        return None
    return abs(r - 1) <= tolerance + 1e-12


def verdict(r: float, *, higher_is_better: bool, tolerance: float = TOLERANCE) -> str:
    """'yes' inside the band; else which side is worse ('no: lab slower' / 'no: lab faster')."""
    w = within(r, tolerance)
    if w is None:
        return "n/a"
    if w:
        return "yes"
    lab_worse = r < 1 if higher_is_better else r > 1
    return "no: lab slower" if lab_worse else "no: lab faster"


def hls_uris(text: str) -> list[str]:
    """Every URI a playlist names: its non-comment lines and ``URI="..."`` attributes of tags."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            i = line.find('URI="')
            if i >= 0:
                out.append(line[i + 5:line.index('"', i + 5)])
            continue
        out.append(line)
    return out


def alternate(rounds: int, sides: Sequence[str] = ("local", "lab")) -> list[str]:
    """The side order: round 1 as given, round 2 reversed, ... (ABBA: linear drift cancels)."""
    out: list[str] = []
    for r in range(rounds):
        out += list(sides) if r % 2 == 0 else list(reversed(sides))
    return out


# ---- the two sides ------------------------------------------------------------------------------
def overrides() -> dict:
    from node.config import CacheConfig, DEFAULT_LADDER
    import msgspec
    return {"ladder": [msgspec.structs.asdict(r) for r in DEFAULT_LADDER],
            "cache": {"max_bytes": int(CacheConfig().max_bytes)},
            "seeds": ["n1", "n2"]}


@dataclass
class Side:
    name: str
    urls: dict[str, str]
    token: str
    s3_endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    storage_pids: Callable[[], list[int]]
    node_pids: Callable[[], list[int]]
    volume_dirs: list[Path]
    close: Callable[[], None]


def start_local(base: Path, ovr: dict) -> Side:
    from harness import Cluster
    c = Cluster(base / "local", 3, ovr)
    return Side("local", {n: c.url(n) for n in c.node_ids}, c.token, c.s3_endpoint, c.bucket,
                c.access_key, c.secret_key,
                storage_pids=lambda: [p for p in [c.pid("storage")] if p],
                node_pids=lambda: [p for p in (c.pid(n) for n in c.node_ids) if p],
                volume_dirs=[c.launcher.s3_dir], close=c.close)


def start_lab(base: Path, ovr: dict, holder: list) -> Side:
    from cli.lab import Lab
    from cli.lab.state import LabState
    from cli.launcher import load_or_create_secrets
    rng = random.Random()
    name = "p" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3))
    from lab_support import free_subnet  # the tests' own: a 10.213.x.0/24 no route overlaps
    lab = Lab.create(name, 3, free_subnet(rng), base / "lab", overrides=ovr, out=sys.stderr,
                     die_with_parent=True)
    holder.append(lab)  # torn down by the caller's finally, also when up() fails half way
    lab.up()
    p = lab.plan
    sec = load_or_create_secrets(p.state_dir / "secrets.json")

    def pids(nodes: bool) -> list[int]:
        st = LabState.load(p.dir)
        return [pid for n, pid in (st.pids.items() if st else ())
                if (n in {p.node_id(h) for h in p.node_hosts}) == nodes]

    doc_storage = p.cluster_doc(ovr)["storage"]
    return Side("lab", {p.node_id(h): f"http://{h.addr}:8000" for h in p.node_hosts}, sec.token,
                p.s3_endpoint, doc_storage["bucket"], sec.s3_access_key, sec.s3_secret_key,
                storage_pids=lambda: pids(False), node_pids=lambda: pids(True),
                volume_dirs=[p.dir / "weed" / h.key for h in p.storage_hosts if h.key.startswith("v")],
                close=lab.down)


# ---- measurements ---------------------------------------------------------------------------------
def cpu_seconds(pids: Iterable[int]) -> float:
    """User+system CPU-s of each process, its live descendants and its reaped children."""
    import psutil
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                try:
                    t = proc.cpu_times()  # children_*: its reaped children (ffmpeg, once done)
                    total += t.user + t.system + t.children_user + t.children_system
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
    return total


@dataclass
class Upload:
    node: str
    vid: str
    upload: float
    to_ready: float
    wait: float
    processing: float


def upload_one(http: httpx.Client, side: Side, node: str, data: bytes) -> Upload:
    url = side.urls[node]
    t0, w0 = time.monotonic(), time.time()
    r = http.post(url + "/v1/videos", content=data, timeout=300,
                  headers={"Authorization": f"Bearer {side.token}", "X-Filename": "src.mp4"})
    t_up = time.monotonic() - t0
    if r.status_code not in (200, 201, 202):
        raise SystemExit(f"{side.name} {node}: upload answered {r.status_code}: {r.text[:300]}")
    vid = r.json()["id"]
    rec: dict = {}
    while True:
        try:
            rr = http.get(f"{url}/v1/videos/{vid}", timeout=5)
            rec = rr.json() if rr.status_code == 200 else rec
        except (httpx.HTTPError, ValueError):
            pass
        if rec.get("state") == "ready":
            break
        if rec.get("state") in ("failed", "deleted"):
            raise SystemExit(f"{side.name}: video {vid} {rec.get('state')}: {rec.get('error')}")
        if time.monotonic() - t0 > READY_TIMEOUT:
            raise SystemExit(f"{side.name}: video {vid} not ready after {READY_TIMEOUT:.0f} s: {rec}")
        time.sleep(POLL)
    to_ready = time.monotonic() - t0
    hist = rec.get("history") or []
    claim = next((h["at"] for h in hist if h["state"] == "processing"), None)
    ready_at = next((h["at"] for h in reversed(hist) if h["state"] == "ready"), None)
    nan = float("nan")
    wait = claim - (w0 + t_up) if claim is not None else nan
    proc = ready_at - claim if claim is not None and ready_at is not None else nan
    return Upload(node, vid, t_up, to_ready, wait, proc)


@dataclass
class Sample:
    seconds: float
    nbytes: int
    hop: bool  # read through a node that does not own the video


@dataclass
class Pass:
    """One playback pass: segment samples, every GET's count and bytes, wall time, errors."""
    segments: list[Sample] = field(default_factory=list)
    gets: int = 0
    nbytes: int = 0
    wall: float = 0.0
    errors: int = 0

    def fetched(self, dt: float, body: bytes | None, *, hop: bool | None = None) -> None:
        """Count one GET; a segment's (``hop`` given) is also a latency sample."""
        self.gets += 1
        if body is None:
            self.errors += 1
            return
        self.nbytes += len(body)
        if hop is not None:
            self.segments.append(Sample(dt, len(body), hop))

    def add(self, other: "Pass") -> None:
        self.segments += other.segments
        self.gets += other.gets
        self.nbytes += other.nbytes
        self.wall += other.wall
        self.errors += other.errors


def timed_get(http: httpx.Client, url: str) -> tuple[float, bytes | None]:
    t0 = time.perf_counter()
    try:
        r = http.get(url)
        body = r.content
    except httpx.HTTPError:
        return time.perf_counter() - t0, None
    dt = time.perf_counter() - t0
    return dt, body if r.status_code == 200 else None


@dataclass
class Video:
    vid: str
    owner: str
    playlists: list[str]  # paths under /v1/videos/<vid>/hls/, master first
    segments: list[str]


def describe(http: httpx.Client, side: Side, vid: str) -> Video:
    """The owner and the object list (master and media playlists read through the owner: they
    are in its cache before the cold pass, which reads them again for its GET and byte counts)."""
    base = side.urls["n1"]
    owner = http.get(f"{base}/v1/cluster/owner/{vid}").json()["owner"]
    hls = f"{side.urls[owner]}/v1/videos/{vid}/hls/"
    playlists, segments = ["master.m3u8"], []
    for media in hls_uris(http.get(hls + "master.m3u8").text):
        playlists.append(media)
        folder = media.rsplit("/", 1)[0] + "/" if "/" in media else ""
        segments += [folder + s for s in hls_uris(http.get(hls + media).text)]
    return Video(vid, owner, playlists, segments)


def cold_pass(http: httpx.Client, side: Side, videos: list[Video]) -> Pass:
    out = Pass()
    t0 = time.perf_counter()
    for v in videos:
        order = [v.owner] + sorted(n for n in side.urls if n != v.owner)
        for path in v.playlists:
            out.fetched(*timed_get(http, f"{side.urls[v.owner]}/v1/videos/{v.vid}/hls/{path}"))
        for k, path in enumerate(v.segments):
            node = order[k % len(order)]
            out.fetched(*timed_get(http, f"{side.urls[node]}/v1/videos/{v.vid}/hls/{path}"),
                        hop=node != v.owner)
    out.wall = time.perf_counter() - t0
    return out


def warm_sequential(http: httpx.Client, side: Side, videos: list[Video]) -> Pass:
    out = Pass()
    t0 = time.perf_counter()
    for node in sorted(side.urls):
        for v in videos:
            hls = f"{side.urls[node]}/v1/videos/{v.vid}/hls/"
            for path in v.playlists:
                out.fetched(*timed_get(http, hls + path))
            for path in v.segments:
                out.fetched(*timed_get(http, hls + path), hop=node != v.owner)
    out.wall = time.perf_counter() - t0
    return out


def warm_concurrent(side: Side, videos: list[Video], clients: int, seconds: float) -> Pass:
    items = [(f"{side.urls[n]}/v1/videos/{v.vid}/hls/{s}", n != v.owner)
             for n in sorted(side.urls) for v in videos for s in v.segments]
    random.Random(13).shuffle(items)
    results = [Pass() for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    stop_at: list[float] = []

    def run(i: int) -> None:
        res = results[i]
        with httpx.Client(timeout=10, trust_env=False) as http:
            k = i * len(items) // clients
            start.wait()
            while time.perf_counter() < stop_at[0]:
                url, hop = items[k % len(items)]
                k += 1
                res.fetched(*timed_get(http, url), hop=hop)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    stop_at.append(t0 + seconds)
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(seconds + 30)
    out = Pass()
    for r in results:
        out.add(r)
    out.wall = time.perf_counter() - t0
    return out


def cache_totals(http: httpx.Client, side: Side) -> dict[str, int]:
    tot: dict[str, int] = {}
    for url in side.urls.values():
        try:
            c = http.get(url + "/v1/node").json().get("cache") or {}
        except (httpx.HTTPError, ValueError):
            continue
        for k in ("hits", "misses", "coalesced", "storage_reads", "owner_hops", "hop_fallbacks"):
            tot[k] = tot.get(k, 0) + int(c.get(k, 0))
    return tot


def probes(http: httpx.Client, side: Side, n_health: int = 30, n_s3: int = 8) -> dict[str, float]:
    import boto3
    from botocore.config import Config as BotoConfig
    hz = []
    for _ in range(n_health):
        for url in side.urls.values():
            t0 = time.perf_counter()
            http.get(url + "/healthz")
            hz.append(time.perf_counter() - t0)
    s3 = boto3.client("s3", endpoint_url=side.s3_endpoint, aws_access_key_id=side.access_key,
                      aws_secret_access_key=side.secret_key, region_name="us-east-1",
                      config=BotoConfig(proxies={}, retries={"max_attempts": 1}))
    body = random.Random(7).randbytes(MIB)
    put, get = [], []
    keys = [f"bench-probe/{time.time_ns()}-{i}" for i in range(n_s3)]
    for k in keys:
        t0 = time.perf_counter()
        s3.put_object(Bucket=side.bucket, Key=k, Body=body)
        put.append(time.perf_counter() - t0)
    for k in keys:
        t0 = time.perf_counter()
        s3.get_object(Bucket=side.bucket, Key=k)["Body"].read()
        get.append(time.perf_counter() - t0)
    # kept (not deleted): a deleted object stays in weed's .dat files until a vacuum, and
    # stored_bytes compares those files with what S3 lists
    return {"healthz": statistics.median(hz), "s3_put": statistics.median(put),
            "s3_get": statistics.median(get)}


def stored_bytes(side: Side) -> tuple[int, int]:
    """(sum of weed ``.dat`` volume files under the side's volume dirs, logical bytes in S3)."""
    import boto3
    from botocore.config import Config as BotoConfig
    dat = sum(p.stat().st_size for d in side.volume_dirs if d.exists() for p in d.rglob("*.dat"))
    s3 = boto3.client("s3", endpoint_url=side.s3_endpoint, aws_access_key_id=side.access_key,
                      aws_secret_access_key=side.secret_key, region_name="us-east-1",
                      config=BotoConfig(proxies={}))
    logical = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=side.bucket):
        logical += sum(o["Size"] for o in page.get("Contents", []))
    return dat, logical


@dataclass
class Turn:
    side: str
    round: int
    uploads: list[Upload]
    cold: Pass
    seq: Pass
    conc: Pass
    cache: dict[str, dict[str, int]]
    probe: dict[str, float]
    cpu_storage: float
    cpu_nodes: float
    seconds: float
    busy: float  # share of the machine's CPU busy during the turn (everyone's)
    other_cpu: float  # CPU-s the other side's processes used during the turn (idle, in theory)


def all_pids(side: Side) -> list[int]:
    return side.storage_pids() + side.node_pids()


def busy_share(t0, t1) -> float:
    """Share of the machine's CPU time not idle (nor iowait) between two psutil.cpu_times()."""
    d = {k: getattr(t1, k) - getattr(t0, k) for k in t0._fields}
    total = sum(d.values())
    return 1 - (d["idle"] + d.get("iowait", 0.0)) / total if total else float("nan")


def turn(side: Side, other: Side, rnd: int, data: bytes, args) -> Turn:
    import psutil
    t_start = time.monotonic()
    machine0, other0 = psutil.cpu_times(), cpu_seconds(all_pids(other))
    cpu0 = (cpu_seconds(side.storage_pids()), cpu_seconds(side.node_pids()))
    nodes = sorted(side.urls)
    with httpx.Client(timeout=30, trust_env=False) as http:
        ups = []
        for i in range(args.uploads):
            u = upload_one(http, side, nodes[i % len(nodes)], data)
            ups.append(u)
            say(f"  {side.name} r{rnd} upload to {u.node}: {u.upload:.2f} s, ready after "
                f"{u.to_ready:.2f} s (wait {u.wait:.2f}, processing {u.processing:.2f})")
        cpu1 = (cpu_seconds(side.storage_pids()), cpu_seconds(side.node_pids()))
        videos = [describe(http, side, u.vid) for u in ups]
        c0 = cache_totals(http, side)
        cold = cold_pass(http, side, videos)
        c1 = cache_totals(http, side)
        seq = warm_sequential(http, side, videos)
        c2 = cache_totals(http, side)
        conc = warm_concurrent(side, videos, args.clients, args.seconds)
        c3 = cache_totals(http, side)
        pr = probes(http, side)

    def delta(a: dict, b: dict) -> dict:
        return {k: b.get(k, 0) - a.get(k, 0) for k in b}

    cache = {"cold": delta(c0, c1), "seq": delta(c1, c2), "conc": delta(c2, c3)}
    say(f"  {side.name} r{rnd} playback: cold {len(cold.segments)} segs p50 "
        f"{percentile([s.seconds for s in cold.segments], 50) * 1e3:.1f} ms; warm seq "
        f"{len(seq.segments)} p50 {percentile([s.seconds for s in seq.segments], 50) * 1e3:.1f} ms; "
        f"concurrent {conc.gets / conc.wall:.0f} req/s, errors {cold.errors + seq.errors + conc.errors}")
    return Turn(side.name, rnd, ups, cold, seq, conc, cache, pr, cpu1[0] - cpu0[0],
                cpu1[1] - cpu0[1], time.monotonic() - t_start,
                busy_share(machine0, psutil.cpu_times()), cpu_seconds(all_pids(other)) - other0)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- report -------------------------------------------------------------------------------------
def figures(turns: list[Turn]) -> dict[str, float]:
    """Every reported figure of one side, pooled over its turns (seconds, req/s, MB/s)."""
    ups = [u for t in turns for u in t.uploads]
    f: dict[str, float] = {
        "upload": statistics.median(u.upload for u in ups),
        "to_ready": statistics.median(u.to_ready for u in ups),
        "wait": statistics.median(u.wait for u in ups),
        "processing": statistics.median(u.processing for u in ups),
    }
    for name in ("cold", "seq", "conc"):
        passes = [getattr(t, name) for t in turns]
        samples = [s.seconds for p in passes for s in p.segments]
        for q in (50, 95, 99):
            f[f"{name}_p{q}"] = percentile(samples, q)
        wall = sum(p.wall for p in passes)
        f[f"{name}_rps"] = sum(p.gets for p in passes) / wall if wall else float("nan")
        f[f"{name}_mbps"] = sum(p.nbytes for p in passes) / wall / 1e6 if wall else float("nan")
        f[f"{name}_errors"] = sum(p.errors for p in passes)
        for hop in (False, True):
            hs = [s.seconds for p in passes for s in p.segments if s.hop == hop]
            f[f"{name}_{'hop' if hop else 'own'}_p50"] = percentile(hs, 50)
    for k in ("healthz", "s3_put", "s3_get"):
        f[k] = statistics.median(t.probe[k] for t in turns)
    f["cpu_storage"] = statistics.mean(t.cpu_storage for t in turns) / max(1, len(turns[0].uploads))
    f["cpu_nodes"] = statistics.mean(t.cpu_nodes for t in turns) / max(1, len(turns[0].uploads))
    return f


# (key, label, unit, higher_is_better, judged against the goal)
ROWS = [
    ("upload", "upload (POST), median", "s", False, True),
    ("to_ready", "upload-to-ready, median", "s", False, True),
    ("wait", "  of which: POST end -> processing claim", "s", False, False),
    ("processing", "  of which: processing claim -> ready", "s", False, False),
    ("cold_p50", "cold segment GET p50", "ms", False, True),
    ("cold_p95", "cold segment GET p95", "ms", False, True),
    ("cold_p99", "cold segment GET p99", "ms", False, True),
    ("cold_own_p50", "  cold, through the owner, p50", "ms", False, False),
    ("cold_hop_p50", "  cold, through a non-owner (hop), p50", "ms", False, False),
    ("cold_rps", "cold pass requests/s (1 client)", "/s", True, True),
    ("cold_mbps", "cold pass MB/s (1 client)", "MB/s", True, True),
    ("seq_p50", "warm sequential segment GET p50", "ms", False, True),
    ("seq_p95", "warm sequential segment GET p95", "ms", False, True),
    ("seq_p99", "warm sequential segment GET p99", "ms", False, True),
    ("seq_own_p50", "  warm, owner hit, p50", "ms", False, False),
    ("seq_hop_p50", "  warm, non-owner hop, p50", "ms", False, False),
    ("seq_rps", "warm sequential requests/s (1 client)", "/s", True, True),
    ("seq_mbps", "warm sequential MB/s (1 client)", "MB/s", True, True),
    ("conc_p50", "warm concurrent segment GET p50", "ms", False, True),
    ("conc_p95", "warm concurrent segment GET p95", "ms", False, True),
    ("conc_p99", "warm concurrent segment GET p99", "ms", False, True),
    ("conc_rps", "warm concurrent requests/s", "/s", True, True),
    ("conc_mbps", "warm concurrent MB/s", "MB/s", True, True),
    ("healthz", "probe: /healthz round trip, median", "ms", False, False),
    ("s3_put", "probe: S3 PUT 1 MiB from the client, median", "ms", False, False),
    ("s3_get", "probe: S3 GET 1 MiB from the client, median", "ms", False, False),
    ("cpu_storage", "storage CPU-s per upload (uploads phase)", "s", False, False),
    ("cpu_nodes", "node CPU-s per upload, ffmpeg included", "s", False, False),
]


def fmt(value: float, unit: str) -> str:
    if value != value:
        return "-"
    if unit == "ms":
        return f"{value * 1e3:.1f}"
    if unit == "s":
        return f"{value:.2f}"
    if unit == "/s":
        return f"{value:.0f}"
    return f"{value:.1f}"


def report(args, argv: list[str], turns: list[Turn], load0, load1, stored: dict, extra: dict) -> str:
    by = {s: [t for t in turns if t.side == s] for s in ("local", "lab")}
    fl, fb = figures(by["local"]), figures(by["lab"])
    lines = [
        "# Lab vs 127.0.0.1: upload-to-ready and playback (bench/lab/paths.py)", "",
        f"Command: `{argv}`", "",
        f"Machine: {platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; load average (1/5/15 min) at the start "
        f"{load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, at the end {load1[0]:.2f}/{load1[1]:.2f}/"
        f"{load1[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; the run took "
        f"{extra['wall']:.0f} s.", "",
        f"Sides: **local** = 3 nodes on 127.0.0.1 + the embedded S3 (weed mini behind the "
        f"gateway); **lab** = `shoal lab` of 3 hosts (one node per network namespace on a bridge; "
        f"SeaweedFS master/filer/S3 in one namespace, 3 volume servers, replication 001).  Both up "
        f"for the whole run; same cluster.yml overrides: default ladder (written out), cache "
        f"{extra['cache_mib']} MiB, seeds n1 n2, profile local.  Source: {args.source_seconds} s "
        f"{WIDTH}x{HEIGHT} testsrc2 + sine, {extra['src_bytes'] / 1e6:.2f} MB "
        f"({extra['renditions']} renditions, {extra['segments']} segments per video).  "
        f"{args.warmup} untimed warm-up upload(s) per side first; "
        f"{args.rounds} round(s), order {' '.join(extra['order'])}; {args.uploads} upload(s) per "
        f"side per round (to n1, n2, n3 in turn); concurrent: {args.clients} clients for "
        f"{args.seconds:g} s.  Client: this process, the machine's own namespace.", "",
        f"Verdict rule: within 20% when |lab/local - 1| <= {TOLERANCE:.2f}.  Rows in *italics* "
        "are breakdowns and probes (the why), not judged.", "",
        "| figure | unit | local | lab | lab/local | within 20%? |",
        "|---|---|---:|---:|---:|---|",
    ]
    judged = []
    for key, label, unit, hib, judge in ROWS:
        r = ratio(fb[key], fl[key])
        v = verdict(r, higher_is_better=hib) if judge else ""
        if judge:
            judged.append((label, r, v))
        lab_ = label.strip() if judge else f"*{label.strip()}*"
        lines.append(f"| {lab_} | {unit} | {fmt(fl[key], unit)} | {fmt(fb[key], unit)} | "
                     f"{r:.2f} | {v} |" if r == r else
                     f"| {lab_} | {unit} | {fmt(fl[key], unit)} | {fmt(fb[key], unit)} | - | {v} |")
    errors = {s: int(f["cold_errors"] + f["seq_errors"] + f["conc_errors"]) for s, f in
              (("local", fl), ("lab", fb))}
    ok = sum(1 for _, _, v in judged if v == "yes")
    lines += ["", f"**{ok} of {len(judged)} judged figures within 20%.**  Failed GETs: local "
              f"{errors['local']}, lab {errors['lab']}.", ""]

    lines += ["## Per round", "",
              "| round | side | turn s | machine CPU busy | other side CPU-s | upload s | to ready s | "
              "cold p50 ms | warm seq p50 ms | conc req/s | conc p99 ms | /healthz ms | S3 PUT 1 MiB ms |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in turns:
        f = figures([t])
        lines.append(f"| {t.round} | {t.side} | {t.seconds:.0f} | {t.busy:.0%} | {t.other_cpu:.1f} | "
                     f"{f['upload']:.2f} | {f['to_ready']:.2f} | {f['cold_p50'] * 1e3:.1f} | "
                     f"{f['seq_p50'] * 1e3:.1f} | {f['conc_rps']:.0f} | {f['conc_p99'] * 1e3:.1f} | "
                     f"{f['healthz'] * 1e3:.2f} | {f['s3_put'] * 1e3:.1f} |")
    lines += ["", "## Cache counters (every node summed, per pass, all rounds)", "",
              "| side | pass | hits | misses | coalesced | storage reads | owner hops | hop fallbacks |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in ("local", "lab"):
        for p in ("cold", "seq", "conc"):
            tot: dict[str, int] = {}
            for t in by[s]:
                for k, v in t.cache[p].items():
                    tot[k] = tot.get(k, 0) + v
            lines.append(f"| {s} | {p} | {tot.get('hits', 0)} | {tot.get('misses', 0)} | "
                         f"{tot.get('coalesced', 0)} | {tot.get('storage_reads', 0)} | "
                         f"{tot.get('owner_hops', 0)} | {tot.get('hop_fallbacks', 0)} |")
    lines += ["", "## Storage: bytes kept per logical byte (measured at the end)", ""]
    for s in ("local", "lab"):
        dat, logical = stored[s]
        lines.append(f"- {s}: `.dat` volume files {dat / 1e6:.1f} MB for {logical / 1e6:.1f} MB of "
                     f"S3 objects: **{dat / logical if logical else float('nan'):.2f}x**")
    lines += ["", "## Reading", ""]
    for label, r, v in judged:
        if v.startswith("no"):
            lines.append(f"- {label.strip()}: lab/local {r:.2f} ({v[4:]}).")
    if all(v == "yes" for _, _, v in judged):
        lines.append("- Every judged figure is within 20%.")
    lines.append(
        f"- Probes: /healthz round trip local {fl['healthz'] * 1e3:.2f} ms, lab "
        f"{fb['healthz'] * 1e3:.2f} ms; S3 PUT 1 MiB from the client local {fl['s3_put'] * 1e3:.1f} ms, "
        f"lab {fb['s3_put'] * 1e3:.1f} ms; GET local {fl['s3_get'] * 1e3:.1f} ms, lab "
        f"{fb['s3_get'] * 1e3:.1f} ms; storage CPU-s per upload local {fl['cpu_storage']:.2f}, "
        f"lab {fb['cpu_storage']:.2f}.")
    return "\n".join(lines) + "\n"


# ---- main -----------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--uploads", type=int, default=3, help="per side per round")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8.0, help="of concurrent playback per turn")
    ap.add_argument("--source-seconds", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed uploads per side before the first round (--quick: 0)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke: 1 round, 1 upload per side, 3 s of concurrent playback")
    ap.add_argument("--md", default=str(Path(__file__).with_name("paths_results.md")))
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.uploads, args.seconds, args.warmup = 1, 1, 3.0, 0
    if os.geteuid() != 0:
        print("the lab needs root (network namespaces)", file=sys.stderr)
        return 2
    argv = shlex.join([sys.executable, *sys.argv])  # exactly as run (from the repository root)
    load0 = os.getloadavg()
    t_run = time.monotonic()

    def on_term(signum, frame):  # SIGTERM: the finally below tears everything down
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)

    import media
    base = Path(tempfile.mkdtemp(prefix="shoal-bench-paths-"))
    sides: dict[str, Side] = {}
    labs: list = []
    turns: list[Turn] = []
    stored: dict[str, tuple[int, int]] = {}
    try:
        src = media.make_video(base / "src.mp4", seconds=args.source_seconds, width=WIDTH,
                               height=HEIGHT)
        data = src.read_bytes()
        ovr = overrides()
        say(f"source {len(data) / 1e6:.2f} MB; starting local cluster and lab")
        sides["local"] = start_local(base, ovr)
        sides["lab"] = start_lab(base, ovr, labs)
        for name in ("local", "lab"):  # untimed: bucket, weed volume growth, first imports
            with httpx.Client(timeout=30, trust_env=False) as http:
                for i in range(args.warmup):
                    u = upload_one(http, sides[name], "n1", data)
                    say(f"  {name} warm-up upload: ready after {u.to_ready:.2f} s (not counted)")
        order = alternate(args.rounds)
        for i, name in enumerate(order):
            rnd = i // 2 + 1
            say(f"round {rnd}: {name}")
            other = sides["lab" if name == "local" else "local"]
            turns.append(turn(sides[name], other, rnd, data, args))
        for name, side in sides.items():
            stored[name] = stored_bytes(side)
        t0 = turns[0]
        extra = {"wall": 0.0, "src_bytes": len(data), "order": order,
                 "cache_mib": ovr["cache"]["max_bytes"] // MIB,
                 "renditions": "?", "segments": len(t0.cold.segments) // max(1, len(t0.uploads))}
        with httpx.Client(timeout=10, trust_env=False) as http:
            v = describe(http, sides[t0.side], t0.uploads[0].vid)
            extra["renditions"] = len(v.playlists) - 1
    finally:
        for name in ("lab", "local"):
            try:
                if name in sides:
                    sides[name].close()
                elif name == "lab" and labs:
                    labs[0].down()
            except Exception as e:  # keep tearing down the other side
                say(f"teardown of {name}: {e}")
        shutil.rmtree(base, ignore_errors=True)
    extra["wall"] = time.monotonic() - t_run
    md = report(args, argv, turns, load0, os.getloadavg(), stored, extra)
    Path(args.md).write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
