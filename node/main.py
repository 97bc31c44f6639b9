"""One Shoal node process: ``python -m node --config cluster.yml --node n1``.

Inside one trio run (trio-asyncio loop outermost, for aioboto3): the storage
client, then the node as node.compose builds it, then its services in one
nursery: storage probe loop -> membership (gossip) and ring -> processing
worker -> owner notifier -> webhook deliverer -> housekeeping -> hypercorn serving the HTTP API
(with node.http.patches applied while it serves).  SIGTERM/SIGINT leave the
cluster gracefully and stop; SIGKILL is survived by design (all durable state
is in storage).
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys

import hypercorn.trio
import trio
import trio_asyncio

import storage

from node import log
from node.compose import Node, compose_node, node_metrics
from node.config import Config, ConfigError, check_secrets
from node.context import NodeContext
from node.http import patches
from node.upload import TusUploads

STORAGE_PROBE_INTERVAL = 1.0
# One probe's bound: a partition drops packets, so a probe on a kept-alive connection would
# otherwise wait the whole storage.read_timeout (60 s).  /readyz turns 503, and the storage
# gate closes (every API request's storage call fails at once: storage.store), at most
# INTERVAL + TIMEOUT (4 s) after storage stops answering.
STORAGE_PROBE_TIMEOUT = 3.0
M_MMAP_THRESHOLD = -3  # glibc mallopt parameters
M_ARENA_MAX = -8


def tune_malloc() -> None:
    """Keep the process's memory close to what it uses (glibc only; elsewhere nothing to do).

    ``SHOAL_MALLOC=arena`` (default): at most two malloc arenas, so the threads that hash
    upload parts do not each keep their own heap of freed part-sized blocks.  ``full`` also fixes
    the mmap threshold at 1 MiB (big blocks go back to the OS at once: lowest RSS, ~25% more
    CPU per uploaded byte from page faults); ``off`` leaves glibc's defaults.  Measured with
    bench/ingest (512 MiB uploads): node CPU 1.8 / 2.5 / 2.0 s, peak RSS 147 / 146 / 153 MiB.
    """
    global _libc
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        mode = os.environ.get("SHOAL_MALLOC", "arena")
        if mode in ("arena", "full"):
            libc.mallopt(M_ARENA_MAX, 2)
            _libc = libc
        if mode == "full":
            libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):
        pass


_libc = None
TRIM_INTERVAL = 1.0


async def trim_memory() -> None:
    """Hand freed heap pages back to the OS once a second (``malloc_trim``): upload parts are
    freed in the middle of the heap, where glibc would otherwise keep them.  On a worker thread
    (ctypes lets go of the GIL): during an upload a trim takes tens of milliseconds, which the
    event loop would otherwise stand still for."""
    if _libc is None:
        return
    while True:
        await trio.sleep(TRIM_INTERVAL)
        await trio.to_thread.run_sync(_libc.malloc_trim, 0)


async def probe_storage(ctx: NodeContext, store: storage.S3Store) -> None:
    """Keep ``ctx.storage_ok`` and ``ctx.storage_gate`` current; create the bucket once storage
    answers.

    Each probe is bounded by ``STORAGE_PROBE_TIMEOUT``: no answer in time counts as unreachable.
    Once storage has answered, a failed probe closes the gate (the API's storage calls fail at
    once, those in flight are cut short); the next good probe opens it.
    """
    bucket_ok = False
    while True:
        error = None
        with trio.move_on_after(STORAGE_PROBE_TIMEOUT) as probe:
            try:
                if not bucket_ok:
                    await store.ensure_bucket()
                    bucket_ok = True
                else:
                    await store.list("pending/", limit=1)
            except storage.StorageError as e:
                error = str(e)
        if probe.cancelled_caught:
            error = f"no answer within {STORAGE_PROBE_TIMEOUT:.0f} s"
        if error is None:
            if not ctx.storage_ok:
                log.info("storage_reachable")
            ctx.storage_ok = True
            ctx.storage_gate.mark(True)
        else:
            if ctx.storage_ok or not bucket_ok:
                log.warning("storage_unreachable", error=error)
            ctx.storage_ok = False
            if bucket_ok:  # it answered once: silence now is a fault, not a slow start
                ctx.storage_gate.mark(False, error)
        await trio.sleep(STORAGE_PROBE_INTERVAL if ctx.storage_ok else 0.5)


async def housekeeping(ctx: NodeContext, tus: TusUploads) -> None:
    """Expire abandoned resumable uploads and abort multipart uploads no record names."""
    while True:
        await trio.sleep(ctx.cfg.timing.housekeeping_interval)
        if not ctx.storage_ok:
            continue
        try:
            n = await tus.housekeep(orphan_grace=ctx.cfg.timing.orphan_grace)
            if n:
                log.info("uploads_expired", count=n)
        except storage.StorageError as e:
            log.warning("housekeeping_failed", error=str(e))


async def run_node(cfg: Config, node_id: str) -> None:
    spec = cfg.node(node_id)
    data_dir = cfg.state_dir / "nodes" / node_id
    data_dir.mkdir(parents=True, exist_ok=True)
    log.configure(node_id)
    log.info("node_starting", http=spec.http_addr, gossip=spec.gossip_addr, pid=os.getpid(),
             storage=cfg.storage.endpoint_url(), log_level=log.current_level())
    metrics = node_metrics()  # first: the store reports every request's time to it
    async with trio_asyncio.open_loop():
        async with storage.open_store(
                cfg.storage.endpoint_url(), cfg.storage.bucket, region=cfg.storage.region,
                access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
                secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
                connect_timeout=cfg.storage.connect_timeout, read_timeout=cfg.storage.read_timeout,
                create_bucket=False, sign_payload=cfg.storage.sign_payload,
                observe=metrics.storage) as store:
            await serve_node(compose_node(cfg, node_id, store, data_dir, metrics=metrics), store)
    log.info("node_stopped")


async def serve_node(node: Node, store: storage.S3Store) -> None:
    """Start the composed node's services in one nursery; on SIGTERM/SIGINT leave and stop."""
    ctx = node.ctx
    assert ctx.tus is not None and ctx.cache is not None  # a composed node has every part
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe_storage, ctx, store)
        nursery.start_soon(trim_memory)
        await nursery.start(node.cluster.serve)
        await nursery.start(ctx.worker.serve)
        await nursery.start(node.owners.serve)
        await nursery.start(ctx.cache.serve)  # eviction notices after a DELETE
        if ctx.webhooks is not None:
            await nursery.start(ctx.webhooks.serve)  # the outbox's events, for videos we own
        nursery.start_soon(housekeeping, ctx, ctx.tus)
        stop = trio.Event()
        with patches.serving(node.lane):
            await nursery.start(functools.partial(hypercorn.trio.serve, node.app, node.http,
                                                  shutdown_trigger=stop.wait))
            log.info("node_serving", http=node.http.bind[0])
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for sig in signals:
                    log.info("node_stopping", signal=signal.Signals(sig).name)
                    break
            stop.set()
            with trio.move_on_after(3):
                await node.cluster.leave()
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m node", description="Run one Shoal node.")
    ap.add_argument("--config", default=os.environ.get("SHOAL_CONFIG", "cluster.yml"))
    ap.add_argument("--node", required=True, help="this node's id in cluster.yml")
    args = ap.parse_args(argv)
    try:
        cfg = Config.load(args.config)
        cfg.node(args.node)
        level = log.level_from(cfg.log_level, os.environ)  # $SHOAL_LOG_LEVEL beats log_level
    except ValueError as e:  # ConfigError is one
        print(f"shoal node: {e}", file=sys.stderr)
        return 2
    log.configure(args.node, level=level)  # our lines and every stdlib logger, at that level
    try:
        check_secrets(cfg, args.node)  # token and cluster key, or `auth: none` (node.config)
    except ConfigError as e:
        print(f"shoal node: {e}", file=sys.stderr)
        return 2
    tune_malloc()
    try:
        trio.run(run_node, cfg, args.node)
    except KeyboardInterrupt:
        pass
    return 0
