"""The tus path of the ingest benchmark: a file in 16 MiB PATCHes through a node.

As a path of run.py (listed in its OPTIONAL_PATHS): ``upload(bench, file, timeout) -> Upload``.
Standalone, tus against direct S3 only (faster than the whole run.py)::

    .venv/bin/python bench/ingest/tus.py --size 1024 --rounds 3 --md bench/ingest/tus_results.md

The client is its own process (``tus.py client FILE --url ...``): POST /v1/uploads, then PATCHes of
``--chunk`` bytes read from disk, each with a sha1 Upload-Checksum (as tuspy and the CLI send),
over one keep-alive connection; the clock runs from the POST to the last PATCH's answer.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MiB = 1 << 20
CHUNK = 16 * MiB


def client(args) -> dict:
    import httpx

    size = os.path.getsize(args.file)
    auth = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    with httpx.Client(timeout=300.0) as http, open(args.file, "rb") as f:
        t0 = time.perf_counter()
        r = http.post(args.url + "/v1/uploads", headers={**auth, "Tus-Resumable": "1.0.0",
                                                          "Upload-Length": str(size)})
        if r.status_code != 201:
            return {"status": r.status_code, "body": r.text, "bytes": 0, "seconds": 0}
        loc = r.headers["Location"]
        offset = 0
        while offset < size:
            chunk = f.read(args.chunk)
            h = {**auth, "Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
                 "Content-Type": "application/offset+octet-stream"}
            if not args.no_checksum:
                h["Upload-Checksum"] = "sha1 " + base64.b64encode(hashlib.sha1(chunk).digest()).decode()
            r = http.patch(args.url + loc, content=chunk, headers=h)
            if r.status_code != 204:
                return {"status": r.status_code, "body": r.text, "bytes": offset, "seconds": 0}
            offset = int(r.headers["Upload-Offset"])
        seconds = time.perf_counter() - t0
    return {"status": 204, "bytes": size, "seconds": seconds, "id": loc.rsplit("/", 1)[-1],
            "patches": -(-size // args.chunk)}


def raw_client(args) -> dict:
    """The same requests without an HTTP library: headers by hand, the body by sendfile(2) from
    the file (no copy in the client); one keep-alive connection.  The sha1 of the next chunk is
    computed on a thread while the current PATCH is on the wire (hashlib releases the GIL)."""
    import socket
    import urllib.parse
    from concurrent.futures import ThreadPoolExecutor

    size = os.path.getsize(args.file)
    u = urllib.parse.urlsplit(args.url)
    auth = f"Authorization: Bearer {args.token}\r\n" if args.token else ""
    sock = socket.create_connection((u.hostname, u.port))
    reader = sock.makefile("rb")

    def request(method: str, path: str, headers: str, f=None, offset: int = 0, count: int = 0):
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {u.netloc}\r\n{auth}Tus-Resumable: 1.0.0\r\n"
                     f"{headers}Content-Length: {count}\r\n\r\n".encode())
        while count:
            sent = sock.sendfile(f, offset, count)
            offset, count = offset + sent, count - sent
        status = int(reader.readline().split()[1])
        answer, length = {}, 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            answer[k.strip().lower()] = v.strip()
        length = int(answer.get("content-length", 0))
        body = reader.read(length) if length else b""
        return status, answer, body

    def sha1_at(fd: int, offset: int) -> bytes:
        return hashlib.sha1(os.pread(fd, min(args.chunk, size - offset), offset)).digest()

    with open(args.file, "rb") as f, ThreadPoolExecutor(1) as pool:
        t0 = time.perf_counter()
        status, h, body = request("POST", "/v1/uploads", f"Upload-Length: {size}\r\n")
        if status != 201:
            return {"status": status, "body": body.decode(errors="replace"), "bytes": 0, "seconds": 0}
        loc = h["location"]
        offset = 0
        digests = {0: pool.submit(sha1_at, f.fileno(), 0)} if not args.no_checksum else {}
        while offset < size:
            n = min(args.chunk, size - offset)
            extra = ""
            if not args.no_checksum:
                digest = digests.pop(offset).result()
                if offset + n < size:
                    digests[offset + n] = pool.submit(sha1_at, f.fileno(), offset + n)
                extra = f"Upload-Checksum: sha1 {base64.b64encode(digest).decode()}\r\n"
            status, h, body = request("PATCH", loc, f"Upload-Offset: {offset}\r\nContent-Type: "
                                      f"application/offset+octet-stream\r\n{extra}", f, offset, n)
            if status != 204:
                return {"status": status, "body": body.decode(errors="replace"), "bytes": offset, "seconds": 0}
            offset = int(h["upload-offset"])
        seconds = time.perf_counter() - t0
    sock.close()
    return {"status": 204, "bytes": size, "seconds": seconds, "id": loc.rsplit("/", 1)[-1],
            "patches": -(-size // args.chunk)}


def cli_client(args) -> dict:
    """Shoal's own command-line client (cli.client.Client.upload_resumable: httpx, the next chunk
    read and hashed on a thread while one is on the wire), from the POST to the last answer."""
    sys.path.insert(0, str(HERE.parent.parent))
    from cli.client import Client  # noqa: PLC0415
    from node.config import Config  # noqa: PLC0415

    cfg = Config.load(Path(args.config))
    with Client(cfg, node="n1", token=args.token) as c:
        t0 = time.perf_counter()
        rec = c.upload_resumable(args.file, chunk_size=args.chunk)
        seconds = time.perf_counter() - t0
    size = os.path.getsize(args.file)
    return {"status": 204, "bytes": size, "seconds": seconds, "id": rec["id"], "patches": -(-size // args.chunk)}


def upload(bench, file: Path, timeout: float, chunk: int = CHUNK, client_kind: str = "httpx",
           checksum: bool = True):
    """run.py's path interface: returns run.Upload."""
    from run import Upload, _run_json  # noqa: PLC0415  (run.py imports this module)

    cmd = [sys.executable, str(Path(__file__).resolve()), "client", str(file), "--url", bench.node.url,
           "--chunk", str(chunk), "--kind", client_kind] + (
        ["--token", bench.node.token] if bench.node.token else []) + ([] if checksum else ["--no-checksum"]) + (
        ["--config", str(bench.node.dir / "cluster.yml")] if client_kind == "cli" else [])
    out = _run_json(cmd, timeout)
    if out["status"] != 204:
        raise RuntimeError(f"tus upload answered {out['status']}: {out.get('body', '')[:500]}")
    STEPS[client_kind].append(patch_steps(bench.node.log_path, out["id"], out["seconds"] / out["patches"]))
    return Upload(out["seconds"], out["bytes"], out["id"])


STEPS: dict[str, list[dict[str, float]]] = {"httpx": [], "raw": [], "cli": []}  # per upload, see patch_steps


def patch_steps(log_path: Path, vid: str, per_patch_s: float) -> dict[str, float]:
    """Where a PATCH's time went (medians over the upload's PATCHes, ms), from the node's
    ``tus_patch`` log lines; ``gap`` is the rest of the client's time per PATCH: sending the
    request head, reading the file and hashing the next chunk, the answer's way back."""
    steps: dict[str, list[float]] = {"lock": [], "receive": [], "drain": [], "commit": []}
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if '"tus_patch"' not in line or vid not in line:
                continue
            ms = json.loads(line).get("ms", {})
            for k in steps:
                steps[k].append(float(ms.get(k, 0.0)))
    out = {k: round(statistics.median(v), 1) if v else 0.0 for k, v in steps.items()}
    out["patch"] = round(per_patch_s * 1000, 1)
    out["gap"] = round(out["patch"] - out["receive"] - out["drain"] - out["commit"], 1)
    return out


def standalone(args) -> dict:
    sys.path.insert(0, str(HERE))
    import run  # noqa: PLC0415
    from stack import S3, Node  # noqa: PLC0415

    sha1 = not args.no_checksum
    run.PATHS["tus"] = lambda bench, file, timeout: upload(bench, file, timeout, checksum=sha1)
    run.PATHS["tus-raw"] = lambda bench, file, timeout: upload(bench, file, timeout, client_kind="raw",
                                                               checksum=sha1)
    run.PATHS["tus-cli"] = lambda bench, file, timeout: upload(bench, file, timeout, client_kind="cli")
    facts = run.machine_facts()
    tmp_parent = "/dev/shm" if Path("/dev/shm").is_dir() else None
    base = Path(tempfile.mkdtemp(prefix="shoal-tus-", dir=tmp_parent))
    rows = []
    try:
        big = run.make_file(base / f"random-{args.size}MiB.bin", args.size * MiB)
        warm = run.make_file(base / "random-64MiB.bin", 64 * MiB)
        with S3(base / "s3") as s3, Node(base, s3, name="node-tus") as node:
            bench = run.Bench(s3, node, "httpx")
            paths = ("tus", "direct") + (("tus-raw",) if args.raw_client else ()) + (
                ("tus-cli",) if args.cli_client else ()) + (("node",) if args.with_node else ())
            for p in paths:
                run.measure(bench, p, warm, 0, args.timeout, sample_node=True, note="warm-up")
            for ups in STEPS.values():
                ups.clear()
            for rnd in range(1, args.rounds + 1):
                for p in (paths if rnd % 2 else paths[::-1]):
                    run.measure(bench, p, big, rnd, args.timeout, sample_node=True)
            rows = [r for r in bench.rows if r.round > 0]
    finally:
        import shutil  # noqa: PLC0415
        shutil.rmtree(base, ignore_errors=True)
    tus_mbps = [r.mbps for r in rows if r.path == "tus"]
    direct_mbps = [r.mbps for r in rows if r.path == "direct"]
    raw_mbps = [r.mbps for r in rows if r.path == "tus-raw"]
    cli_mbps = [r.mbps for r in rows if r.path == "tus-cli"]
    peaks = [r.rss_peak_mib for r in rows if r.path.startswith("tus")]
    result = {
        "machine": facts, "size_mib": args.size, "chunk_mib": CHUNK // MiB, "rounds": args.rounds,
        "tus_mbps": tus_mbps, "direct_mbps": direct_mbps,
        "node_mbps": [r.mbps for r in rows if r.path == "node"], "tus_raw_mbps": raw_mbps,
        "tus_cli_mbps": cli_mbps,
        "cli_ratio": round(statistics.median(cli_mbps) / statistics.median(direct_mbps), 3) if cli_mbps else None,
        "ratio": round(statistics.median(tus_mbps) / statistics.median(direct_mbps), 3),
        "ratios": [round(t / d, 2) for t, d in zip(tus_mbps, direct_mbps)],
        "raw_ratio": round(statistics.median(raw_mbps) / statistics.median(direct_mbps), 3) if raw_mbps else None,
        "cpu": {p: [[round(r.cpu_node_s or 0, 1), round(r.cpu_s3_s or 0, 1), round(r.cpu_client_s or 0, 1)]
                    for r in rows if r.path == p] for p in paths},
        "load": [round(r.load1, 2) for r in rows],
        "node_rss_peak_mib": max(peaks), "node_rss_idle_mib": min(r.rss_base_mib for r in rows if r.path == "tus"),
        "rows": [r.__dict__ for r in rows],
    }
    result["steps"] = {kind: {k: round(statistics.median(u[k] for u in ups), 1) for k in ups[0]}
                       for kind, ups in STEPS.items() if ups}
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    if args.md:
        Path(args.md).write_text(markdown(result, " ".join(sys.argv)))
    return result


def markdown(res: dict, command: str) -> str:
    med = statistics.median
    rows = [("tus (httpx client)", res["tus_mbps"], "tus"), ("direct (aioboto3)", res["direct_mbps"], "direct")]
    if res["tus_raw_mbps"]:
        rows.insert(1, ("tus (sendfile client)", res["tus_raw_mbps"], "tus-raw"))
    if res.get("tus_cli_mbps"):
        rows.insert(1, ("tus (shoal upload --resumable)", res["tus_cli_mbps"], "tus-cli"))
    if res["node_mbps"]:
        rows.append(("node (one POST, reference)", res["node_mbps"], "node"))
    cpu = res["cpu"]
    lines = [
        "# Ingest: tus through a node vs straight to S3",
        "",
        f"Command: `.venv/bin/python {command.split('/work/main/')[-1]}`",
        "",
        f"A {res['size_mib']} MiB random file; tus = POST /v1/uploads then PATCHes of {res['chunk_mib']} MiB "
        "(sha1 Upload-Checksum on each, computed by the client) through one node (default settings: "
        "5 MiB parts, 2 in flight); direct = aioboto3 multipart to the same SeaweedFS with the same part "
        "size and concurrency. Alternating order, medians over the rounds; node RSS sampled every 50 ms "
        "(psutil); CPU seconds of node / S3 server / client per upload.",
        "",
        f"Machine: {res['machine']}; load average (1 min) at the end of each upload: "
        f"{', '.join(map(str, res['load']))}",
        "",
        "| path | MB/s per round | median | CPU node/S3/client s per round |",
        "|---|---|---|---|",
    ] + [f"| {name} | {', '.join(map(str, v))} | {round(med(v), 1)} | "
         f"{'; '.join('/'.join(map(str, c)) for c in cpu.get(key, []))} |" for name, v, key in rows] + [
        "",
        f"**Ratio tus/direct: {res['ratio']}** (per round {', '.join(map(str, res['ratios']))}; goal >= 0.85)"
        + (f"; with the sendfile client {res['raw_ratio']}" if res["raw_ratio"] else "")
        + (f"; with shoal upload --resumable {res['cli_ratio']}" if res.get("cli_ratio") else "") + ". "
        f"Node peak RSS during the tus uploads: {res['node_rss_peak_mib']} MiB "
        f"(idle {res['node_rss_idle_mib']} MiB).",
        "",
        "Where a PATCH's time goes (medians, ms; node log `tus_patch`; gap = the client's per-PATCH "
        "time not spent in the node's receive, drain and commit):",
        "",
        "| client | per PATCH | lock (overlaps receive) | receive | drain | commit | gap |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ] + [f"| {kind} | {st['patch']} | {st['lock']} | {st['receive']} | {st['drain']} | {st['commit']} | "
         f"{st['gap']} |" for kind, st in res.get("steps", {}).items()] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    c = sub.add_parser("client")
    c.add_argument("file")
    c.add_argument("--url", required=True)
    c.add_argument("--token")
    c.add_argument("--chunk", type=int, default=CHUNK)
    c.add_argument("--no-checksum", action="store_true")
    c.add_argument("--kind", choices=("httpx", "raw", "cli"), default="httpx")
    c.add_argument("--config", help="the node's cluster.yml (--kind cli)")
    ap.add_argument("--raw-client", action="store_true",
                    help="also tus with the lean client (sendfile, no HTTP library): less client CPU")
    ap.add_argument("--cli-client", action="store_true",
                    help="also tus with Shoal's own client (shoal upload --resumable)")
    ap.add_argument("--no-checksum", action="store_true",
                    help="PATCHes without Upload-Checksum (no sha1 in the client or the node)")
    ap.add_argument("--size", type=int, default=1024, help="MiB")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--md", help="write the figures as markdown here")
    ap.add_argument("--with-node", action="store_true", help="also the one-request POST /v1/videos path")
    args = ap.parse_args(argv)
    if args.cmd == "client":
        print(json.dumps({"raw": raw_client, "cli": cli_client}.get(args.kind, client)(args)))
        return 0
    standalone(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
