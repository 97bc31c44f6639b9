"""Read what storage holds for a chaos run into a :class:`~cli.chaos.checker.Snapshot`.

Straight from the object store (any :class:`storage.ObjectStore`: S3 for real runs, MemoryStore in
tests), never through the nodes. Which videos: every id the history names, plus every video in
``catalog/`` created since the run started (to find duplicates a retry may have made).
"""

from __future__ import annotations

import base64
import os
import hashlib
import json
from typing import Any, Iterable

import storage

from .checker import Snapshot

__all__ = ["read_snapshot", "id_time", "open_cluster_store"]


def id_time(vid: str) -> float | None:
    """Creation time (unix seconds) encoded in a video id's first 48 bits; None if not an id."""
    try:
        raw = base64.b32decode(vid.upper() + "=" * (-len(vid) % 8))
    except (ValueError, TypeError):
        return None
    return int.from_bytes(raw[:6], "big") / 1000.0 if len(raw) >= 6 else None


async def _sha256(store: storage.ObjectStore, key: str) -> tuple[int, str] | None:
    h = hashlib.sha256()
    n = 0
    try:
        async for chunk in store.iter_object(key):
            h.update(chunk)
            n += len(chunk)
    except storage.NotFound:
        return None
    return n, h.hexdigest()


async def read_snapshot(store: storage.ObjectStore, history: Iterable[dict], *,
                        name_prefix: str | None = None, since: float | None = None) -> Snapshot:
    history = list(history)
    run = next((e for e in history if e.get("op") == "run"), {})
    name_prefix = name_prefix or run.get("name_prefix")
    since = since if since is not None else (run.get("t0", 0.0) - 5.0)
    vids: set[str] = set()
    for e in history:
        for v in [e.get("video"), *(e.get("ids") or [])]:
            if isinstance(v, str) and v:
                vids.add(v)
    for info in await store.list_all("catalog/"):
        vid = info.key.removeprefix("catalog/")
        t = id_time(vid)
        if t is not None and t >= since:
            vids.add(vid)
    snap = Snapshot()
    for vid in sorted(vids):
        try:
            body, _ = await store.get(f"videos/{vid}/record.json")
            rec: dict[str, Any] | None = json.loads(body)
        except storage.NotFound:
            rec = None
        snap.records[vid] = rec
        snap.sources[vid] = await _sha256(store, f"videos/{vid}/source")
        snap.out_keys[vid] = [i.key for i in await store.list_all(f"videos/{vid}/out/")]
        snap.chunk_keys[vid] = [i.key for i in await store.list_all(f"videos/{vid}/chunks/")]
        units = []
        for info in await store.list_all(f"videos/{vid}/units/"):
            try:
                units.append(json.loads((await store.get(info.key))[0]))
            except storage.NotFound:
                pass
        snap.units[vid] = units
        name = (rec or {}).get("filename")
        if name and (name_prefix is None or name.startswith(name_prefix)):
            snap.names.setdefault(name, []).append(vid)
    snap.multiparts = [(m.key, m.upload_id, m.initiated)
                       for m in await store.list_multipart_uploads("videos/")]
    return snap


def open_cluster_store(cfg: Any, secrets: Any | None):
    """``storage.open_store`` for a cluster config (enter inside ``trio_asyncio.open_loop()``).

    Credentials: the launcher's generated S3 keys for embedded storage, or for any storage when
    the environment has none (a lab's SeaweedFS runs with the keys of its secrets.json); else the
    environment.
    """
    kw: dict[str, Any] = {}
    if secrets is not None and (cfg.storage.embedded or not os.environ.get("AWS_ACCESS_KEY_ID")):
        kw = {"access_key": secrets.s3_access_key, "secret_key": secrets.s3_secret_key}
    return storage.open_store(cfg.storage.endpoint_url(), cfg.storage.bucket, region=cfg.storage.region,
                              create_bucket=False, **kw)
