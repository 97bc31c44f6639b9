"""Upload clients, each run in its own process so it never shares a CPU scheduler with the node.

    python bench/ingest/clients.py s3 FILE --endpoint URL --bucket B --key K --part-size N --concurrency C
    python bench/ingest/clients.py http FILE --url URL [--token T]     # httpx, streamed from disk
    python bench/ingest/clients.py sink --port P                       # null HTTP sink (client ceiling)

Each client prints one JSON line: {"bytes": n, "seconds": t, "status": ..., "body": ...}; the
clock runs from just before the first request to just after the last answer (process start
and imports are outside it).  ``curl`` is driven from run.py directly (see :func:`curl_command`).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time

BLOCK = 1 << 20


def curl_command(file: str, url: str, token: str | None) -> list[str]:
    """curl streaming ``file`` as a POST body with Content-Length (``-T`` reads as it sends;
    ``--data-binary @file`` would first load the whole file into memory)."""
    cmd = ["curl", "-sS", "--fail-with-body", "-X", "POST", "-T", file, "-H", "Expect:",
           "-H", "Content-Type: application/octet-stream", "-H", f"X-Filename: {os.path.basename(file)}",
           "-o", "-", "-w", "\n%{http_code} %{time_total} %{size_upload}", "--max-time", "300"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    return cmd + [url]


def parse_curl(out: str) -> dict:
    body, _, tail = out.rstrip().rpartition("\n")
    code, seconds, size = tail.split()
    return {"status": int(code), "seconds": float(seconds), "bytes": int(float(size)), "body": body}


# ---- direct to S3 ------------------------------------------------------------------------------
async def s3_upload(args) -> dict:
    import asyncio

    import aioboto3
    import botocore.config

    # The same client settings as storage.open_store uses inside the node.
    cfg = botocore.config.Config(
        retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5.0, read_timeout=60.0,
        max_pool_connections=64, s3={"addressing_style": "path"},
        request_checksum_calculation="when_required", response_checksum_validation="when_required")
    session = aioboto3.Session(aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                               aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                               region_name="us-east-1")
    size = os.path.getsize(args.file)
    async with session.client("s3", endpoint_url=args.endpoint, config=cfg) as s3:
        try:
            await s3.create_bucket(Bucket=args.bucket)
        except Exception:  # already there
            pass
        slots = asyncio.Semaphore(args.concurrency)
        parts: dict[int, str] = {}

        async def one(n: int, body: bytes) -> None:
            try:
                r = await s3.upload_part(Bucket=args.bucket, Key=args.key, UploadId=uid, PartNumber=n, Body=body)
                parts[n] = r["ETag"]
            finally:
                slots.release()

        t0 = time.perf_counter()
        uid = (await s3.create_multipart_upload(Bucket=args.bucket, Key=args.key))["UploadId"]
        tasks = []
        with open(args.file, "rb") as f:
            n = 0
            while True:
                await slots.acquire()  # read a part only when a slot is free: memory is bounded
                body = f.read(args.part_size)
                if not body:
                    slots.release()
                    break
                n += 1
                tasks.append(asyncio.ensure_future(one(n, body)))
        await asyncio.gather(*tasks)
        await s3.complete_multipart_upload(
            Bucket=args.bucket, Key=args.key, UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": i, "ETag": parts[i]} for i in sorted(parts)]})
        seconds = time.perf_counter() - t0
        await s3.delete_object(Bucket=args.bucket, Key=args.key)  # outside the clock; frees disk
    return {"bytes": size, "seconds": seconds, "status": 200, "parts": n}


# ---- through HTTP with httpx ------------------------------------------------------------------------
def http_upload(args) -> dict:
    import httpx

    size = os.path.getsize(args.file)
    headers = {"Content-Length": str(size), "X-Filename": os.path.basename(args.file),
               "Content-Type": "application/octet-stream"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"

    def blocks():
        with open(args.file, "rb") as f:
            while b := f.read(BLOCK):
                yield b

    t0 = time.perf_counter()
    r = httpx.post(args.url, content=blocks(), headers=headers, timeout=300.0)
    seconds = time.perf_counter() - t0
    return {"bytes": size, "seconds": seconds, "status": r.status_code, "body": r.text}


# ---- null sink --------------------------------------------------------------------------------------
def sink(args) -> None:
    """Answer every POST after reading and discarding its body; one connection at a time."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(4)
    print(json.dumps({"listening": args.port}), flush=True)
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    while True:
        conn, _ = srv.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                head += chunk
            header, _, rest = head.partition(b"\r\n\r\n")
            length = 0
            for line in header.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            left = length - len(rest)
            while left > 0:
                n = conn.recv_into(view, min(left, BLOCK))
                if not n:
                    break
                left -= n
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("s3")
    s.add_argument("file")
    s.add_argument("--endpoint", required=True)
    s.add_argument("--bucket", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--part-size", type=int, default=8 << 20)
    s.add_argument("--concurrency", type=int, default=2)
    h = sub.add_parser("http")
    h.add_argument("file")
    h.add_argument("--url", required=True)
    h.add_argument("--token")
    k = sub.add_parser("sink")
    k.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    if args.cmd == "s3":
        import asyncio
        out = asyncio.run(s3_upload(args))
    elif args.cmd == "http":
        out = http_upload(args)
    else:
        sink(args)
        return 0
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
