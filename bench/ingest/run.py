"""Ingest benchmark (issue 2): one file through a node vs straight to the same S3 server.

    .venv/bin/python bench/ingest/run.py                        # 3 rounds, 256 MiB and 1 GiB
    .venv/bin/python bench/ingest/run.py --rounds 5 --sizes 1024 --sweep --json out.json

Starts a real embedded S3 server (SeaweedFS) and ONE node process on free ports in a tmp dir,
generates random files once (random bytes: the node's worker fails them at the probe, and the
bench waits for that before the next measurement), then alternates, ``--rounds`` times per size:

- ``node``:   ``POST /v1/videos`` with Content-Length, the body streamed from disk by a client in
              its own process (curl ``-T``, or ``--client httpx``); the node's RSS is sampled
              every 50 ms (psutil) during the upload.
- ``direct``: the same file to the same S3 server with aioboto3 multipart in its own process, with
              the node's part size and parts in flight.

Also measured: the client's ceiling (the same client into a null HTTP sink), aioboto3's best
concurrency, and (``--sweep``) node settings from cluster.yml (part size, parts in flight, body
buffer), each against a direct upload with the same part size and concurrency.

Goal: median node/direct throughput ratio >= 0.9; node peak RSS <= 150 MiB, flat in file size.

Another upload path (e.g. tus) plugs in as a module beside this one, ``bench/ingest/<name>.py``
listed in :data:`OPTIONAL_PATHS`, defining ``upload(bench: Bench, file: Path, timeout: float) ->
Upload`` (seconds measured by the client, bytes, and the video id to settle); run.py samples the
node's RSS around the call and alternates it with the other paths.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import clients  # noqa: E402
from rss import RssSampler  # noqa: E402
from stack import ACCESS_KEY, BUCKET, SECRET_KEY, S3, Node  # noqa: E402

MiB = 1 << 20
OPTIONAL_PATHS = ["tus"]


@dataclass
class Upload:
    """What a client reports."""
    seconds: float
    bytes: int
    video_id: str | None = None


@dataclass
class Row:
    path: str
    size_mib: int
    round: int
    seconds: float
    mbps: float  # MB/s, 10^6 bytes
    rss_peak_mib: float | None = None
    rss_base_mib: float | None = None
    settings: str = ""
    note: str = ""
    cpu_node_s: float | None = None  # CPU seconds the node process used during the upload
    cpu_s3_s: float | None = None  # ... the S3 server
    cpu_client_s: float | None = None  # ... the client process(es)
    load1: float = 0.0  # 1-minute load average when the upload ended (other work on the machine)


@dataclass
class Bench:
    """What a path needs: the running processes, the client choice, a timeout."""
    s3: S3
    node: Node
    client: str = "curl"
    part_size: int = 8 * MiB
    parts_in_flight: int = 2
    rows: list[Row] = field(default_factory=list)


def _run_json(cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} exited {p.returncode}: {p.stderr[-2000:]} {p.stdout[-500:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---- the paths ------------------------------------------------------------------------------------
def http_post(file: Path, url: str, token: str | None, client: str, timeout: float) -> tuple[Upload, str]:
    if client == "curl":
        p = subprocess.run(clients.curl_command(str(file), url, token), capture_output=True, text=True,
                           timeout=timeout)
        if p.returncode not in (0, 22):
            raise RuntimeError(f"curl exited {p.returncode}: {p.stderr[-1000:]}")
        out = clients.parse_curl(p.stdout)
    else:
        cmd = [sys.executable, str(HERE / "clients.py"), "http", str(file), "--url", url]
        out = _run_json(cmd + (["--token", token] if token else []), timeout)
    if out["status"] not in (200, 201):
        raise RuntimeError(f"upload answered {out['status']}: {out.get('body', '')[:500]}")
    return Upload(out["seconds"], out["bytes"]), out.get("body", "")


def node_path(bench: Bench, file: Path, timeout: float) -> Upload:
    up, body = http_post(file, bench.node.url + "/v1/videos", bench.node.token, bench.client, timeout)
    up.video_id = json.loads(body)["id"]
    return up


def direct_path(bench: Bench, file: Path, timeout: float, concurrency: int | None = None) -> Upload:
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    cmd = [sys.executable, str(HERE / "clients.py"), "s3", str(file), "--endpoint", bench.s3.endpoint,
           "--bucket", BUCKET, "--key", f"bench/{uuid.uuid4().hex}", "--part-size", str(bench.part_size),
           "--concurrency", str(concurrency or bench.parts_in_flight)]
    out = _run_json(cmd, timeout, env)
    return Upload(out["seconds"], out["bytes"])


PATHS: dict[str, Callable[[Bench, Path, float], Upload]] = {"node": node_path, "direct": direct_path}


def load_optional_paths() -> None:
    for name in OPTIONAL_PATHS:
        if (HERE / f"{name}.py").exists():
            mod = importlib.import_module(name)
            PATHS[name] = mod.upload


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped children: the client processes
    return ru.ru_utime + ru.ru_stime


def measure(bench: Bench, path: str, file: Path, rnd: int, timeout: float, *, sample_node: bool,
            settings: str = "", fn: Callable[[Bench, Path, float], Upload] | None = None, note: str = "",
            around: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> Row:
    """One upload by ``path``; the node's RSS (if ``sample_node``) and everyone's CPU meanwhile."""
    fn = fn or PATHS[path]
    c0 = _children_cpu()
    with RssSampler(bench.node.pid, 0.05) as rss, RssSampler(bench.s3.pid, 1.0) as s3cpu, around():
        up = fn(bench, file, timeout)
    cpu_client = _children_cpu() - c0
    peak, base = (rss.peak / MiB, rss.base / MiB) if sample_node else (None, None)
    load1 = os.getloadavg()[0]
    if up.video_id:
        state = bench.node.settle_and_delete(up.video_id)
        note = note or f"worker: {state}"
    bench.s3.vacuum()
    row = Row(path, file.stat().st_size // MiB, rnd, round(up.seconds, 3),
              round(up.bytes / up.seconds / 1e6, 1), None if peak is None else round(peak, 1),
              None if base is None else round(base, 1), settings, note, round(rss.cpu_seconds, 2),
              round(s3cpu.cpu_seconds, 2), round(cpu_client, 2), round(load1, 1))
    bench.rows.append(row)
    print(f"  {row.path:>8} {row.size_mib:>5} MiB round {rnd}: {row.mbps:7.1f} MB/s "
          f"{row.seconds:6.2f} s" + (f"  node RSS peak {peak:6.1f} MiB (idle {base:5.1f})" if peak else "")
          + f"  cpu node/s3/client {row.cpu_node_s:.1f}/{row.cpu_s3_s:.1f}/{row.cpu_client_s:.1f} s"
          + (f"  [{settings}]" if settings else "") + f"  load {load1:.1f}", flush=True)
    return row


# ---- setup ------------------------------------------------------------------------------------------
def make_file(path: Path, size: int) -> Path:
    """Random bytes (incompressible; undecodable, so the worker fails it at the probe)."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 64 * MiB)
            f.write(os.urandom(n))
            left -= n
    return path


def client_ceiling(file: Path, client: str, timeout: float) -> float:
    """The node client into a null sink: what the client alone can push (MB/s)."""
    port = clients_port = __import__("storage").free_port()
    sink = subprocess.Popen([sys.executable, str(HERE / "clients.py"), "sink", "--port", str(port)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        sink.stdout.readline()  # type: ignore[union-attr]
        up, _ = http_post(file, f"http://127.0.0.1:{clients_port}/", None, client, timeout)
        return up.bytes / up.seconds / 1e6
    finally:
        sink.kill()
        sink.wait(5)


def machine_facts() -> dict:
    import psutil
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "mem_gib": round(psutil.virtual_memory().total / 2**30, 1), "platform": platform.platform()}


# ---- report -----------------------------------------------------------------------------------------
def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summary(rows: list[Row], settings: str = "") -> list[dict]:
    """Per size: median MB/s per path, median node/direct ratio over rounds, peak node RSS."""
    out = []
    for size in sorted({r.size_mib for r in rows if r.settings == settings and r.round > 0}):
        sel = [r for r in rows if r.size_mib == size and r.settings == settings and r.round > 0]
        rounds = sorted({r.round for r in sel})
        by = {(r.path, r.round): r for r in sel}
        ratios = [by["node", k].mbps / by["direct", k].mbps for k in rounds
                  if ("node", k) in by and ("direct", k) in by]
        line = {"size_mib": size, "rounds": len(rounds),
                "ratio_median": round(med(ratios), 3), "ratios": [round(x, 3) for x in ratios]}
        for p in PATHS:
            ps = [r for r in sel if r.path == p]
            if ps:
                line[f"{p}_mbps"] = round(med([r.mbps for r in ps]), 1)
                peaks = [r.rss_peak_mib for r in ps if r.rss_peak_mib is not None]
                if peaks:
                    line[f"{p}_rss_peak_mib"] = max(peaks)
        out.append(line)
    return out


def markdown(summ: list[dict]) -> str:
    extra = [p for p in PATHS if p not in ("node", "direct")]
    head = ["size", "rounds", "node MB/s", "direct MB/s", *[f"{p} MB/s" for p in extra],
            "node/direct (median)", "per round", "node peak RSS"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summ:
        cells = [f"{s['size_mib']} MiB", str(s["rounds"]), f"{s.get('node_mbps', float('nan')):.1f}",
                 f"{s.get('direct_mbps', float('nan')):.1f}",
                 *[f"{s.get(p + '_mbps', float('nan')):.1f}" for p in extra],
                 f"**{s['ratio_median']:.2f}**", ", ".join(f"{x:.2f}" for x in s["ratios"]),
                 f"{s.get('node_rss_peak_mib', float('nan')):.1f} MiB"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- main -------------------------------------------------------------------------------------------
SWEEP = [  # (label, cluster.yml overrides)
    ("part 5 MiB", {"storage": {"part_size": "5MiB"}}),
    ("part 16 MiB", {"storage": {"part_size": "16MiB"}}),
    ("in flight 4", {"storage": {"parts_in_flight": 4}}),
    ("body buffer 4 MiB", {"limits": {"body_buffer": "4MiB"}}),
]


def bench_for(s3: S3, node: Node, client: str, over: dict) -> Bench:
    from node.config import parse_size  # noqa: PLC0415  (the node's own parser for "16MiB")
    st = over.get("storage", {})
    return Bench(s3, node, client, part_size=parse_size(st.get("part_size", 8 * MiB)),
                 parts_in_flight=int(st.get("parts_in_flight", 2)))


def side_by_side(bench: Bench, files: dict[int, Path], sizes: list[int], rounds: int, timeout: float,
                 settings: str = "") -> None:
    """Every path on every size, ``rounds`` times, the order flipped every round."""
    for size in sizes:
        for rnd in range(1, rounds + 1):
            order = list(PATHS) if rnd % 2 else list(reversed(PATHS))
            for p in order:
                measure(bench, p, files[size], rnd, timeout, sample_node=True, settings=settings)


def default_phase(args, result: dict, s3: S3, files: dict[int, Path], sizes: list[int], base: Path) -> list[Row]:
    """Warm-up, the side-by-side rounds, aioboto3 concurrencies, and (--profile) py-spy."""
    big = files[max(sizes)]
    with Node(base, s3, name="node-default") as node:
        bench = Bench(s3, node, args.client)
        for p in PATHS:  # warm-up (round 0): SeaweedFS allocates volumes on first writes
            measure(bench, p, files[64], 0, args.timeout, sample_node=True, note="warm-up")
        side_by_side(bench, files, sizes, args.rounds, args.timeout)
        conc = {}  # aioboto3 concurrency for reference, one upload each of the big file
        for c in args.concurrency:
            row = measure(bench, "direct", big, -1, args.timeout, sample_node=False,
                          settings=f"aioboto3 c={c}",
                          fn=lambda b, f, t, c=c: direct_path(b, f, t, concurrency=c))
            conc[c] = row.mbps
        result["aioboto3_concurrency_mbps"] = conc
        if args.profile:
            from spy import Profiler  # noqa: PLC0415
            prof = Profiler(node.pid, base / "node.pyspy.txt")
            measure(bench, "node", big, -2, args.timeout, sample_node=False,
                    settings="under py-spy", around=lambda: prof)
            result["profile"] = prof.report()
        return bench.rows


def run(args) -> dict:
    load_optional_paths()
    facts = machine_facts()
    print(f"machine: {facts}", flush=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp_parent = args.tmp or ("/dev/shm" if Path("/dev/shm").is_dir() else None)
    base = Path(tempfile.mkdtemp(prefix="shoal-ingest-", dir=tmp_parent))
    result: dict = {"machine": facts, "args": vars(args), "dir": str(base)}
    t_start = time.monotonic()
    try:
        files = {}
        for size in sorted(set(sizes + [64])):
            files[size] = make_file(base / f"random-{size}MiB.bin", size * MiB)
        big = files[max(sizes)]
        ceiling = client_ceiling(big, args.client, args.timeout)
        result["client_ceiling_mbps"] = round(ceiling, 1)
        print(f"client ceiling ({args.client} -> null sink, {max(sizes)} MiB): {ceiling:.1f} MB/s", flush=True)
        rows: list[Row] = []
        with S3(base / "s3") as s3:
            # 1. memory of the upload path alone: a fresh node per size, its first upload
            fresh: dict = {}
            result["aioboto3_concurrency_mbps"] = {}
            for size in (sizes if not args.sweep_only else []):
                with Node(base, s3, name=f"node-fresh-{size}") as node:
                    b = Bench(s3, node, args.client)
                    row = measure(b, "node", files[size], 0, args.timeout, sample_node=True,
                                  settings="fresh node")
                    fresh[size] = {"idle_mib": row.rss_base_mib, "peak_mib": row.rss_peak_mib,
                                   "mbps": row.mbps}
                    rows += b.rows
            result["fresh_node_rss"] = fresh
            # 2. side by side, default settings
            if not args.sweep_only:
                rows += default_phase(args, result, s3, files, sizes, base)
            # 3. settings from cluster.yml, each against direct with the same part size/concurrency
            if args.sweep:
                for label, over in SWEEP:
                    with Node(base, s3, over, name=f"node-{label.replace(' ', '-')}") as node:
                        b = bench_for(s3, node, args.client, over)
                        side_by_side(b, files, [max(sizes)], args.sweep_rounds, args.timeout, settings=label)
                        rows += b.rows
    finally:
        if not args.keep:
            import shutil
            shutil.rmtree(base, ignore_errors=True)

    result["rows"] = [asdict(r) for r in rows]
    result["summary"] = summary(rows)
    result["sweep"] = {label: summary(rows, label) for label, _ in SWEEP} if args.sweep else {}
    result["seconds"] = round(time.monotonic() - t_start, 1)
    print()
    print(markdown(result["summary"]))
    print(f"\nfresh node, first upload: {result['fresh_node_rss']}")
    for label, s in result["sweep"].items():
        print(f"\n{label}:\n" + markdown(s))
    print(f"\naioboto3 concurrency (MB/s, {max(sizes)} MiB): {result['aioboto3_concurrency_mbps']}")
    if "profile" in result:
        print("\nnode profile during a big upload:\n" + result["profile"])
    print(f"\ntotal {result['seconds']} s" + (f"; files and logs in {base}" if args.keep else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="256,1024", help="file sizes in MiB, comma-separated")
    ap.add_argument("--client", choices=["curl", "httpx"], default="curl")
    ap.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8],
                    help="aioboto3 concurrencies to try for reference")
    ap.add_argument("--sweep", action="store_true", help="also try node settings (cluster.yml)")
    ap.add_argument("--sweep-rounds", type=int, default=2)
    ap.add_argument("--sweep-only", action="store_true", help="skip the default-settings phases")
    ap.add_argument("--profile", action="store_true", help="py-spy the node during one more big upload")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per upload")
    ap.add_argument("--json", help="write every figure to this file")
    ap.add_argument("--tmp", help="parent of the work dir, S3 data included (default: /dev/shm, so "
                    "the disk is not what is measured)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (files, logs)")
    run(ap.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
