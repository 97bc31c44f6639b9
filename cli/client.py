"""A small synchronous HTTP client for the command line: any node is a valid entry point.

Without a chosen node, requests go to the first node of ``cluster.yml`` (or of the ``--url``
list, :mod:`cli.target`) that accepts a connection (reads also move on after a transport error). Non-2xx answers become
:class:`ApiError` (the contract's ``{"error": {"code", "message"}}``); transport failures on
every node become :class:`Unreachable`. Uploads stream from disk:

- :meth:`Client.upload`: one ``POST /v1/videos`` whose body is a generator of 1 MiB blocks
  (``Content-Length`` set, never the whole file in memory), with an ``Idempotency-Key`` so a
  retry after a broken connection (on the next node) never creates a second video;
- :meth:`Client.upload_resumable`: tus 1.0.0 in ``chunk_size`` PATCHes (16 MiB) with a sha1
  ``Upload-Checksum``, the next chunk read and hashed while one is on the wire; after a failure it asks the next node (HEAD) for the durable offset
  and continues from there, up to ``max_failures`` failures in a row.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import urllib.parse
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import httpx

from node.config import Config, NodeSpec

from .errors import ApiError, CliError, Unreachable
from .progress import Progress
from .target import Endpoint, select_endpoint

__all__ = ["Client", "api_error", "transport_reason", "TUS_VERSION"]

TUS_VERSION = "1.0.0"
_BLOCK = 1024 * 1024
# Read timeout: the longest silence allowed from a node, e.g. while it completes the multipart
# upload after the last byte. A tus PATCH is one chunk: a node silent that long is treated as gone.
_UPLOAD_TIMEOUT = httpx.Timeout(connect=5.0, read=120.0, write=120.0, pool=5.0)
_PATCH_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)

def api_error(r: httpx.Response) -> ApiError:
    """The error a non-2xx response stands for (the contract's shape, or the bare status)."""
    code, message = f"http_{r.status_code}", r.reason_phrase or "error"
    try:
        err = r.json().get("error")
        if isinstance(err, dict):
            code = str(err.get("code") or code)
            message = str(err.get("message") or message)
    except (ValueError, AttributeError):
        text = r.text.strip()
        if text:
            message = f"{message}: {text[:200]}"
    retry_after = None
    try:
        retry_after = float(r.headers["Retry-After"])
    except (KeyError, ValueError):
        pass
    return ApiError(r.status_code, code, message, retry_after=retry_after)

def _check(r: httpx.Response) -> httpx.Response:
    if not 200 <= r.status_code < 300:
        raise api_error(r)
    return r

class Client:
    def __init__(self, cfg: Config | Sequence[Endpoint], *, node: str | None = None,
                 token: str | None = None,
                 timeout: float = 10.0, sleep: Callable[[float], None] = time.sleep,
                 transport: httpx.BaseTransport | None = None,
                 notice: Callable[[str], None] | None = None):
        # the nodes of cluster.yml, or endpoints named by URL only (anything with .id and .url)
        self.endpoints: list[NodeSpec | Endpoint] = list(cfg.nodes if isinstance(cfg, Config) else cfg)
        if not self.endpoints:
            raise CliError("no node to talk to")
        self.notice = notice  # told about retries and node switches (the CLI prints them)
        self.only = self._named(cfg, node) if node else None
        self.token = token
        self.http = httpx.Client(timeout=httpx.Timeout(timeout, connect=2.0), transport=transport)
        self.sleep = sleep
        self._preferred = 0  # index into nodes() of the last node that answered

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _named(self, cfg: Config | Sequence[Endpoint], node: str) -> NodeSpec | Endpoint:
        if isinstance(cfg, Config):
            return cfg.node(node)  # ConfigError names the known nodes
        return select_endpoint(self.endpoints, node)

    # ---- plumbing --------------------------------------------------------------------------------
    def nodes(self) -> list[NodeSpec | Endpoint]:
        """Nodes in the order they are tried: the chosen one alone, else the last good one first."""
        if self.only is not None:
            return [self.only]
        nodes = self.endpoints
        return nodes[self._preferred:] + nodes[:self._preferred]

    def auth(self, headers: dict[str, str] | None = None) -> dict[str, str]:
        h = dict(headers or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """Send to the first node that answers; raise ApiError on non-2xx, Unreachable if none."""
        tried = []
        for spec in self.nodes():
            try:
                r = self.http.request(method, spec.url + path, **kw)
            except httpx.TransportError as e:
                tried.append(f"{spec.id} ({spec.url}): {transport_reason(e)}")
                continue
            self._remember(spec)
            return _check(r)
        raise Unreachable("no node answered: " + "; ".join(tried))

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        r = self.request("GET", path, params={k: v for k, v in (params or {}).items() if v is not None})
        try:
            return r.json()
        except ValueError:
            raise CliError(f"GET {path}: the node answered something that is not JSON") from None

    def _remember(self, spec: NodeSpec | Endpoint) -> None:
        if self.only is None:
            self._preferred = self.endpoints.index(spec)

    # ---- one-request upload ----------------------------------------------------------------------
    def upload(self, path: str | Path, *, idempotency_key: str | None = None,
               progress: Progress | None = None, attempts: int = 3) -> dict:
        """POST the file as the raw body; retried (same Idempotency-Key) on the next node."""
        path = Path(path)
        size = _file_size(path)
        key = idempotency_key or uuid.uuid4().hex
        headers = self.auth({"Content-Length": str(size), "Idempotency-Key": key,
                             "X-Filename": _header_filename(path.name),
                             "Content-Type": "application/octet-stream"})
        errors: list[str] = []
        for attempt in range(attempts):
            spec = self.nodes()[attempt % len(self.nodes())]
            if progress is not None:
                progress.set(0)
            try:
                r = self.http.post(spec.url + "/v1/videos", content=_blocks(path, progress),
                                   headers=headers, timeout=_UPLOAD_TIMEOUT)
            except httpx.TransportError as e:
                errors.append(f"{spec.id}: {transport_reason(e)}")
                if self.notice is not None and attempt + 1 < attempts:
                    self.notice(f"{errors[-1]}; retrying the upload (same Idempotency-Key)")
                self.sleep(min(0.5 * 2 ** attempt, 5.0))
                continue
            if r.status_code in (429, 503) and attempt + 1 < attempts:
                err = api_error(r)
                errors.append(f"{spec.id}: {err}")
                self.sleep(min(err.retry_after or 1.0, 10.0))
                continue
            self._remember(spec)
            return _check(r).json()
        raise Unreachable(f"upload failed after {attempts} attempts: " + "; ".join(errors))

    # ---- resumable upload (tus 1.0.0) ------------------------------------------------------------
    def upload_resumable(self, path: str | Path, *, chunk_size: int = 16 * _BLOCK,
                         progress: Progress | None = None, max_failures: int = 8) -> dict:
        """Upload with tus; survives a node dying mid-way by continuing on the next one."""
        path = Path(path)
        size = _file_size(path)
        meta = "filename " + base64.b64encode(path.name.encode()).decode()
        create = self.auth({"Tus-Resumable": TUS_VERSION, "Upload-Length": str(size),
                            "Upload-Metadata": meta})
        r = self.request("POST", "/v1/uploads", headers=create)
        location = r.headers.get("Location")
        if not location:
            raise CliError("POST /v1/uploads answered without a Location header")
        upload_path = urllib.parse.urlsplit(location).path
        video_id = upload_path.rstrip("/").rsplit("/", 1)[-1]

        order = self.nodes()
        at = 0  # index into order of the node we PATCH
        offset, failures = 0, 0
        with ChunkReader(path, size, chunk_size) as chunks:
            while offset < size:
                spec = order[at % len(order)]
                chunk, digest = chunks.at(offset)  # the next one is read and hashed meanwhile
                headers = self.auth({
                    "Tus-Resumable": TUS_VERSION, "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                    "Upload-Checksum": "sha1 " + base64.b64encode(digest).decode(),
                })
                problem: str | None = None
                try:
                    r = self.http.patch(spec.url + upload_path, content=chunk, headers=headers,
                                        timeout=_PATCH_TIMEOUT)
                except httpx.TransportError as e:
                    problem = f"{spec.id}: {transport_reason(e)}"
                    at += 1  # that node may be gone: continue on the next one
                else:
                    if 200 <= r.status_code < 300:
                        offset = int(r.headers.get("Upload-Offset", offset + len(chunk)))
                        failures = 0
                        if progress is not None:
                            progress.set(offset)
                        continue
                    if r.status_code not in (409, 423, 429, 460, 500, 502, 503, 504):
                        raise api_error(r)
                    problem = f"{spec.id}: {api_error(r)}"
                failures += 1
                if failures > max_failures:
                    raise Unreachable(f"resumable upload {video_id} stopped at byte {offset} of "
                                      f"{size} after {failures} failures in a row; last: {problem}")
                self.sleep(min(0.25 * 2 ** failures, 5.0))
                offset, at = self._tus_offset(upload_path, order, at, offset)
                if self.notice is not None:
                    self.notice(f"{problem}; resuming at byte {offset} on {order[at % len(order)].id}")
                if progress is not None:
                    progress.set(offset)
        self._remember(order[at % len(order)])
        return self.get_json(f"/v1/videos/{video_id}")

    def _tus_offset(self, upload_path: str, order: list[NodeSpec], at: int,
                    fallback: int) -> tuple[int, int]:
        """HEAD the upload on the nodes, starting at ``at``; the durable offset and who answered."""
        for i in range(len(order)):
            spec = order[(at + i) % len(order)]
            try:
                r = self.http.head(spec.url + upload_path,
                                   headers=self.auth({"Tus-Resumable": TUS_VERSION}))
            except httpx.TransportError:
                continue
            if r.status_code == 200 and "Upload-Offset" in r.headers:
                return int(r.headers["Upload-Offset"]), at + i
            if r.status_code in (404, 410):
                raise ApiError(r.status_code, "upload_gone", f"upload {upload_path} no longer exists")
        return fallback, at + 1  # nobody answered: the next PATCH tries the next node

class ChunkReader:
    """The chunks of a file and their sha1, each read and hashed on a worker thread while the
    previous one is on the wire (the node waits for nothing between PATCHes then; bench/ingest:
    a client that reads and hashes only after the answer leaves storage idle ~19 ms a PATCH).
    At most two chunks in memory: the one asked for and the next."""

    def __init__(self, path: Path, size: int, chunk_size: int) -> None:
        self.path, self.size, self.chunk_size = path, size, chunk_size
        self._next: tuple[int, Future[tuple[bytes, bytes]]] | None = None

    def __enter__(self) -> "ChunkReader":
        self._file = open(self.path, "rb")
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="shoal-read")
        return self

    def __exit__(self, *exc: object) -> None:
        self._next = None
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._file.close()

    def _read(self, offset: int) -> tuple[bytes, bytes]:
        chunk = os.pread(self._file.fileno(), min(self.chunk_size, self.size - offset), offset)
        return chunk, hashlib.sha1(chunk).digest()  # hashlib lets go of the GIL for big buffers

    def at(self, offset: int) -> tuple[bytes, bytes]:
        """The chunk at ``offset`` and its sha1; starts reading the one after it."""
        ahead, self._next = self._next, None
        if ahead is not None and ahead[0] == offset:
            chunk, digest = ahead[1].result()
        else:  # the first chunk, or the upload went on elsewhere (a resume): read it now
            chunk, digest = self._read(offset)
        if offset + len(chunk) < self.size:
            self._next = (offset + len(chunk), self._pool.submit(self._read, offset + len(chunk)))
        return chunk, digest


def _file_size(path: Path) -> int:
    try:
        if not path.is_file():
            raise CliError(f"{path}: not a file")
        return path.stat().st_size
    except OSError as e:
        raise CliError(f"{path}: {e.strerror or e}") from None

def _blocks(path: Path, progress: Progress | None) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            if progress is not None:
                progress.advance(len(block))
            yield block

def _header_filename(name: str) -> str:
    return name if name.isascii() and name.isprintable() else urllib.parse.quote(name)

def transport_reason(e: httpx.TransportError) -> str:
    if isinstance(e, httpx.ConnectError):
        return "connection refused" if "refused" in str(e).lower() else f"cannot connect ({e})"
    if isinstance(e, httpx.TimeoutException):
        return f"timed out ({type(e).__name__})"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__

