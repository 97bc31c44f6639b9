"""The chaos workload: client threads that upload, poll and play while the nemesis strikes.

Each thread has its own seeded ``random.Random`` and ``httpx.Client`` and loops until told to
stop, picking one operation at a time:

- ``upload`` one-shot: ``POST /v1/videos`` with an ``Idempotency-Key``, retried with the same key
  on transport errors and 409/429/5xx, on a random node each time;
- ``upload`` resumable: tus create, PATCHes of small chunks, after a failure HEAD on another node
  for the durable offset; abandoned (``DELETE``) when its deadline passes;
- ``poll``: ``GET /v1/videos/<id>`` of a known video on a random node;
- ``play``: master playlist, every media playlist and every segment they name, each from a random
  node, recording who served what and whether each named object was fetchable.

Every operation writes one history line (see :mod:`cli.chaos.history`).
"""

from __future__ import annotations

import base64
import hashlib
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from .media_pool import MediaPool

__all__ = ["Workload", "WorkloadParams", "Known"]

RETRY_STATUS = {409, 423, 429, 500, 502, 503, 504}
TUS = "1.0.0"


@dataclass(frozen=True)
class WorkloadParams:
    threads: int = 3
    max_uploads: int = 200  # logical uploads in the whole run
    invalid_share: float = 0.25
    tus_share: float = 0.3
    think: tuple[float, float] = (0.2, 1.0)  # seconds between a thread's operations
    upload_deadline: float = 60.0  # a logical upload gives up after this
    after_stop: float = 30.0  # uploads in flight keep retrying this long after the stop
    tus_chunk: tuple[int, int] = (16_384, 65_536)
    timeout: float = 10.0  # per HTTP request
    weights: dict = field(default_factory=lambda: {"upload": 3, "poll": 3, "play": 3})


class Known:
    """Videos the workload has seen acknowledged, and those it saw ready (shared by threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.videos: list[str] = []
        self.ready: list[str] = []
        self.uploads = 0

    def add(self, vid: str) -> None:
        with self.lock:
            if vid not in self.videos:
                self.videos.append(vid)

    def mark_ready(self, vid: str) -> None:
        with self.lock:
            if vid not in self.ready:
                self.ready.append(vid)

    def next_upload(self, limit: int) -> int | None:
        with self.lock:
            if self.uploads >= limit:
                return None
            self.uploads += 1
            return self.uploads


class Workload:
    def __init__(self, cfg: Any, token: str | None, history: Any, pool: MediaPool, *, seed: int,
                 name_prefix: str, params: WorkloadParams = WorkloadParams(),
                 stop: threading.Event | None = None, clock=time.time) -> None:
        self.cfg = cfg
        self.urls = {n.id: n.url for n in cfg.nodes}
        self.token = token
        self.history = history
        self.pool = pool
        self.seed = seed
        self.prefix = name_prefix
        self.p = params
        self.stop = stop or threading.Event()
        self.stopped_at: float | None = None
        self.clock = clock
        self.known = Known()

    # ---- threads ------------------------------------------------------------------------------
    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._loop, args=(i,), daemon=True, name=f"workload-{i}")
                   for i in range(self.p.threads)]
        for t in threads:
            t.start()
        return threads

    def _loop(self, i: int) -> None:
        rng = random.Random(f"workload:{self.seed}:{i}")
        ops = list(self.p.weights)
        weights = [self.p.weights[o] for o in ops]
        with httpx.Client(timeout=httpx.Timeout(self.p.timeout, connect=2.0)) as http:
            while not self.stop.is_set():
                op = rng.choices(ops, weights)[0]
                try:
                    if op == "upload":
                        n = self.known.next_upload(self.p.max_uploads)
                        if n is not None:
                            self.upload(http, rng, n)
                    elif op == "poll":
                        self.poll(http, rng)
                    else:
                        self.play(http, rng)
                except Exception as e:  # a workload bug must not hide the run: record and go on
                    self.history.write("error", where=op, error=f"{type(e).__name__}: {e}"[:500])
                self.stop.wait(rng.uniform(*self.p.think))

    def _headers(self, extra: dict | None = None) -> dict:
        h = dict(extra or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def _deadline(self, t0: float) -> float:
        d = t0 + self.p.upload_deadline
        if self.stop.is_set():
            d = min(d, (self.stopped_at or self.clock()) + self.p.after_stop)
        return d

    def _node(self, rng: random.Random) -> str:
        return rng.choice(list(self.urls))

    # ---- uploads ------------------------------------------------------------------------------
    def upload(self, http: httpx.Client, rng: random.Random, n: int) -> None:
        valid = rng.random() >= self.p.invalid_share
        name = f"{self.prefix}-{n}.{'mp4' if valid else 'bin'}"
        path = self.pool.make(rng, name, valid)
        try:
            data = path.read_bytes()
        finally:
            path.unlink(missing_ok=True)
        entry = {"valid": valid, "name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if rng.random() < self.p.tus_share:
            self._upload_tus(http, rng, data, entry)
        else:
            self._upload_oneshot(http, rng, data, entry)

    def _upload_oneshot(self, http: httpx.Client, rng: random.Random, data: bytes, entry: dict) -> None:
        key = entry["name"]
        t0 = self.clock()
        ids: list[str] = []
        errors: list[str] = []
        attempts, result, vid, node = 0, "failed", None, None
        while self.clock() < self._deadline(t0):
            attempts += 1
            node = self._node(rng)
            try:
                r = http.post(self.urls[node] + "/v1/videos", content=data, headers=self._headers({
                    "Idempotency-Key": key, "X-Filename": key, "Content-Type": "application/octet-stream"}))
            except httpx.HTTPError as e:
                errors.append(f"{node}: {type(e).__name__}")
            else:
                if r.status_code in (200, 201):
                    vid = r.json()["id"]
                    ids.append(vid)
                    result = "ok"
                    break
                errors.append(f"{node}: {r.status_code} {_code(r)}")
                if r.status_code not in RETRY_STATUS:
                    break
            time.sleep(min(0.2 * 2 ** min(attempts, 5), 3.0) * rng.uniform(0.5, 1.0))
        if vid:
            self.known.add(vid)
        self.history.write("upload", kind="oneshot", key=key, t0=t0, t1=self.clock(), node=node,
                           video=vid, ids=ids, result=result, attempts=attempts, errors=errors[-5:], **entry)

    def _upload_tus(self, http: httpx.Client, rng: random.Random, data: bytes, entry: dict) -> None:
        t0 = self.clock()
        errors: list[str] = []
        ids: list[str] = []
        attempts, result, vid, node, offset = 0, "failed", None, None, 0
        meta = "filename " + base64.b64encode(entry["name"].encode()).decode()
        # create (a lost answer leaves an upload we do not know of: it expires by itself)
        while vid is None and self.clock() < self._deadline(t0):
            attempts += 1
            node = self._node(rng)
            try:
                r = http.post(self.urls[node] + "/v1/uploads", headers=self._headers({
                    "Tus-Resumable": TUS, "Upload-Length": str(len(data)), "Upload-Metadata": meta}))
            except httpx.HTTPError as e:
                errors.append(f"create {node}: {type(e).__name__}")
            else:
                if r.status_code == 201:
                    vid = r.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
                    ids.append(vid)
                    break
                errors.append(f"create {node}: {r.status_code} {_code(r)}")
                if r.status_code not in RETRY_STATUS:
                    break
            time.sleep(min(0.2 * 2 ** min(attempts, 5), 3.0))
        chunk = rng.randint(*self.p.tus_chunk)
        while vid is not None and result != "ok" and self.clock() < self._deadline(t0):
            attempts += 1
            body = data[offset:offset + chunk]
            try:
                r = http.patch(self.urls[node] + f"/v1/uploads/{vid}", content=body, headers=self._headers({
                    "Tus-Resumable": TUS, "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                    "Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(body).digest()).decode()}))
            except httpx.HTTPError as e:
                errors.append(f"patch {node}: {type(e).__name__}")
            else:
                if 200 <= r.status_code < 300:
                    offset = int(r.headers.get("Upload-Offset", offset + len(body)))
                    if offset >= len(data):
                        result = "ok"
                    continue
                errors.append(f"patch {node}: {r.status_code} {_code(r)}")
                if r.status_code not in RETRY_STATUS | {460}:
                    break
            time.sleep(min(0.2 * 2 ** min(len(errors), 5), 3.0))
            node, offset = self._tus_offset(http, rng, vid, node, offset)
        if vid is not None and result != "ok":
            result = "abandoned"
            for _ in range(5):  # a good client frees what it gives up (tus termination)
                node = self._node(rng)
                try:
                    r = http.delete(self.urls[node] + f"/v1/uploads/{vid}",
                                    headers=self._headers({"Tus-Resumable": TUS}))
                    if r.status_code in (204, 404, 410):
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(1.0)
        if result == "ok":
            self.known.add(vid)
        self.history.write("upload", kind="tus", t0=t0, t1=self.clock(), node=node, video=vid if result == "ok" else None,
                           tus_id=vid, ids=ids, result=result, attempts=attempts, offset=offset,
                           errors=errors[-5:], **entry)

    def _tus_offset(self, http: httpx.Client, rng: random.Random, vid: str, node: str,
                    offset: int) -> tuple[str, int]:
        for other in rng.sample(list(self.urls), len(self.urls)):
            try:
                r = http.head(self.urls[other] + f"/v1/uploads/{vid}",
                              headers=self._headers({"Tus-Resumable": TUS}))
            except httpx.HTTPError:
                continue
            if r.status_code == 200 and "Upload-Offset" in r.headers:
                return other, int(r.headers["Upload-Offset"])
        return self._node(rng), offset

    # ---- reads --------------------------------------------------------------------------------
    def poll(self, http: httpx.Client, rng: random.Random) -> None:
        with self.known.lock:
            vids = list(self.known.videos)
        if not vids:
            return
        vid = rng.choice(vids)
        node = self._node(rng)
        t0 = self.clock()
        status, state, served = None, None, None
        try:
            r = http.get(self.urls[node] + f"/v1/videos/{vid}")
            status, served = r.status_code, r.headers.get("X-Served-By")
            if r.status_code == 200:
                state = r.json().get("state")
        except httpx.HTTPError as e:
            status = type(e).__name__
        if state == "ready":
            self.known.mark_ready(vid)
        self.history.write("poll", t0=t0, t1=self.clock(), node=served or node, asked=node, video=vid,
                           status=status, state=state, result=status)

    def play(self, http: httpx.Client, rng: random.Random) -> None:
        with self.known.lock:
            pool = self.known.ready if self.known.ready and rng.random() < 0.8 else self.known.videos
            vids = list(pool)
        if not vids:
            return
        vid = rng.choice(vids)
        base = f"/v1/videos/{vid}/hls/"
        master = self._get_playlist(http, rng, vid, base, "master.m3u8")
        if master is None:
            return
        variants = []
        for uri in _uris(master["text"]):
            media = self._get_playlist(http, rng, vid, base, uri)
            variants.append({"name": uri, "status": media["status"] if media else None,
                             "node": media["node"] if media else None})
        self.history.write("playlist", **master["entry"], variants=variants)

    def _get_playlist(self, http: httpx.Client, rng: random.Random, vid: str, base: str,
                      path: str) -> dict | None:
        """GET a playlist; a media playlist's segments are fetched and its entry written here."""
        node = self._node(rng)
        t0 = self.clock()
        try:
            r = http.get(self.urls[node] + base + path)
        except httpx.HTTPError as e:
            self.history.write("playlist", t0=t0, t1=self.clock(), node=node, asked=node, video=vid,
                               path=path, status=type(e).__name__, result="error")
            return None
        t1 = self.clock()
        entry = {"t0": t0, "t1": t1, "node": r.headers.get("X-Served-By") or node, "asked": node,
                 "video": vid, "path": path, "status": r.status_code, "result": r.status_code}
        if r.status_code != 200:
            if path == "master.m3u8":
                self.history.write("playlist", **entry, code=_code(r))
            return {"status": r.status_code, "node": entry["node"], "text": "", "entry": entry} \
                if path != "master.m3u8" else None
        entry["sha256"] = hashlib.sha256(r.content).hexdigest()
        if path == "master.m3u8":
            return {"status": 200, "node": entry["node"], "text": r.text, "entry": entry}
        prefix = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
        segments = []
        for uri in _uris(r.text):
            snode = self._node(rng)
            try:
                s = http.get(self.urls[snode] + base + prefix + uri)
                segments.append({"name": uri, "status": s.status_code,
                                 "node": s.headers.get("X-Served-By") or snode, "size": len(s.content)})
            except httpx.HTTPError as e:
                segments.append({"name": uri, "status": type(e).__name__, "node": snode})
        self.history.write("playlist", **entry, segments=segments)
        return {"status": 200, "node": entry["node"], "text": r.text, "entry": entry}


def _uris(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _code(r: httpx.Response) -> str:
    try:
        return str(r.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""
