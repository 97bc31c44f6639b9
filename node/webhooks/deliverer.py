"""The delivery service: scan the outbox, POST what this node owns, remove what was taken.

Every ``webhooks.scan_interval`` seconds (and at once after :meth:`Deliverer.poke`, which the
node calls on every ring change) the service lists up to ``SCAN_LIMIT`` keys of
``webhooks/outbox/`` (continuing after the last key next time when there are more) and handles
those whose video this node owns on the ring, at most ``webhooks.concurrency`` at once:

    read the entry and the video's record -> policy.plan
      WAIT     nothing (not due, or its transition may still commit)
      DROP     delete the entry                              log webhook_dropped
      DELIVER  POST the body to every URL that has not taken it yet
               log webhook_sent / webhook_failed (url, attempt, status) per POST, then
               DONE:  delete the entry
               RETRY: write attempts, delivered, next_at by CAS (If-Match on what was read)
               DEAD:  write webhooks/dead/<video>/<id>, delete the entry   log webhook_dead

The ring decides who sends, so when a node dies its entries are picked up by the next owner
once gossip has rebuilt the ring; storage keeps ``attempts`` and ``next_at`` across owners.
A response body is never read (one POST costs at most ``webhooks.timeout`` and no memory).
Duplicates are possible (docs/webhooks.md): a node dying between a 2xx and the delete, two
nodes owning a video for a moment while the ring converges, the writer re-creating an entry
just delivered.  Each carries the same event id.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Callable

import httpx
import trio

import storage
from storage import cas

from node import log
from node.config import WebhooksConfig
from node.records import outbox
from node.records.store import VideoStore
from node.webhooks import message, policy
from node.webhooks.policy import Action, Outcome, Verdict

SCAN_LIMIT = 1000  # outbox keys listed per scan
USER_AGENT = "shoal-webhooks/1"


@dataclass(frozen=True)
class DelivererStatistics:
    scans: int
    backlog: int  # entries of this node's videos seen in the last scan
    sent: int  # POSTs answered 2xx
    failed: int  # POSTs without a 2xx
    dead: int  # entries given up
    dropped: int  # entries whose transition never committed


class Deliverer:
    def __init__(self, videos: VideoStore, cfg: WebhooksConfig, node_id: str, secret: bytes, *,
                 owns: Callable[[str], bool], clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.videos = videos
        self.store = videos.store
        self.cfg = cfg
        self.node_id = node_id
        self._secret = secret
        self._owns = owns  # does this node own the video on the ring now?
        self.clock = clock
        self._rng = rng or random.Random()
        self._transport = transport  # tests: httpx.MockTransport; None: the network
        self._wake = trio.Event()
        self._after: str | None = None  # where the next scan continues when the last was full
        self._counts = {"scans": 0, "backlog": 0, "sent": 0, "failed": 0, "dead": 0, "dropped": 0}

    def statistics(self) -> DelivererStatistics:
        return DelivererStatistics(**self._counts)

    def poke(self) -> None:
        """Scan now (the ring changed: this node may own more videos)."""
        self._wake.set()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.cfg.timeout, follow_redirects=False,
                                 transport=self._transport, headers={"User-Agent": USER_AGENT})

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with self.client() as client:
            task_status.started()
            while True:
                try:
                    await self.scan_once(client)
                except storage.StorageError as e:  # NoSuchBucket: a fresh cluster's first scans
                    (log.debug if "NoSuchBucket" in str(e) else log.warning)("webhook_scan_failed", error=str(e))
                with trio.move_on_after(self.cfg.scan_interval):
                    await self._wake.wait()
                self._wake = trio.Event()

    async def scan_once(self, client: httpx.AsyncClient) -> int:
        """One pass over (a page of) the outbox; returns how many entries this node handled."""
        page = await self.store.list(outbox.OUTBOX_PREFIX, start_after=self._after, limit=SCAN_LIMIT)
        self._after = page[-1].key if len(page) >= SCAN_LIMIT else None
        mine = [info.key for info in page
                if (vid := outbox.video_of_key(info.key)) is not None and self._owns(vid)]
        self._counts["scans"] += 1
        self._counts["backlog"] = len(mine)
        limit = trio.Semaphore(self.cfg.concurrency)

        async def one(key: str) -> None:
            async with limit:
                try:
                    await self.handle(client, key)
                except storage.StorageError as e:  # this entry stays; the next scan tries again
                    log.warning("webhook_entry_failed", key=key, error=str(e))

        async with trio.open_nursery() as nursery:
            for key in mine:
                nursery.start_soon(one, key)
        return len(mine)

    async def handle(self, client: httpx.AsyncClient, key: str) -> Action:
        found = await cas.read(self.store, key)
        if found is None:
            return Action.WAIT
        entry = found.doc
        if int(entry.get("format", 0)) > outbox.FORMAT:  # a newer node's entry: leave it alone
            return Action.WAIT
        rec = await self.videos.get(entry["video"])
        now = self.clock()
        action = policy.plan(entry, rec.doc if rec else None, now, self.cfg.intent_grace)
        if action is Action.DROP:
            await self.store.delete(key)
            self._counts["dropped"] += 1
            log.warning("webhook_dropped", video=entry["video"], epoch=entry["epoch"], id=entry["id"],
                        webhook=entry["event"], reason="its transition never committed",
                        age=round(now - float(entry.get("written_at") or 0.0), 3))
        elif action is Action.DELIVER:
            await self._deliver(client, key, found)
        return action

    async def _deliver(self, client: httpx.AsyncClient, key: str, found: cas.Versioned) -> None:
        entry = found.doc
        urls = list(self.cfg.urls)
        attempt = int(entry.get("attempts", 0)) + 1
        body = message.body_of(entry)
        outcomes = [await self._post(client, url, body, entry, attempt)
                    for url in policy.pending_urls(entry, urls)]
        result = policy.after_round(entry, outcomes, urls, now=self.clock(),
                                    max_attempts=self.cfg.max_attempts, base=self.cfg.backoff_base,
                                    cap=self.cfg.backoff_max, rng=self._rng)
        if result.verdict is Verdict.DONE:
            await self.store.delete(key)
        elif result.verdict is Verdict.RETRY:
            try:
                await self.store.put(key, cas.encode(result.entry), if_match=found.etag,
                                     content_type="application/json")
            except storage.PreconditionFailed:
                pass  # re-written meanwhile (its writer refreshed it): the next scan reads it again
        else:
            await self.store.put(outbox.dead_key(entry["video"], entry["id"]), cas.encode(result.entry),
                                 content_type="application/json")
            await self.store.delete(key)
            self._counts["dead"] += 1
            last = result.entry.get("last") or {}
            log.error("webhook_dead", video=entry["video"], epoch=entry["epoch"], id=entry["id"],
                      webhook=entry["event"], attempts=result.entry["attempts"], url=last.get("url"),
                      status=last.get("status"), error=last.get("error"),
                      kept=outbox.dead_key(entry["video"], entry["id"]))

    async def _post(self, client: httpx.AsyncClient, url: str, body: bytes,
                    entry: dict[str, Any], attempt: int) -> Outcome:
        headers = {
            "Content-Type": "application/json",
            message.SIGNATURE_HEADER: message.sign(self._secret, body, int(self.clock())),
            message.EVENT_HEADER: entry["event"],
            message.EVENT_ID_HEADER: entry["id"],
            message.ATTEMPT_HEADER: str(attempt),
        }
        started = time.monotonic()
        try:
            async with client.stream("POST", url, content=body, headers=headers) as r:
                outcome = Outcome(url, r.status_code)
        except httpx.HTTPError as e:
            outcome = Outcome(url, None, f"{type(e).__name__}: {e}"[:200])
        ms = round((time.monotonic() - started) * 1000, 1)
        fields = dict(video=entry["video"], epoch=entry["epoch"], id=entry["id"], webhook=entry["event"],
                      url=url, attempt=attempt, status=outcome.status, ms=ms)
        if outcome.ok:
            self._counts["sent"] += 1
            log.info("webhook_sent", **fields)
        else:
            self._counts["failed"] += 1
            log.warning("webhook_failed", error=outcome.error, **fields)
        return outcome
