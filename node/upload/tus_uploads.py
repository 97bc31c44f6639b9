"""The storage side of tus uploads: stream PATCH bodies into multipart parts and a tail object.

One PATCH, on any node:

1. lock     CAS the record: ``upload.lock = {holder, request, expires, first, last}`` if no live
            lock and the client's Upload-Offset equals the durable offset (else 409); renewed
            every ttl/3.  ``first..last``: part numbers no lock had before (fencing, tus.take_lock).
            The CAS starts from the record version this node wrote last (If-Match, no read);
            the body is received meanwhile, up to one part.
2. stream   the old tail's bytes, then the body, go into parts (:mod:`node.upload.tus_patch`): with
            Content-Length whole parts and a last one that takes the rest (no tail), each sent
            to storage while its bytes arrive; ``parts_in_flight`` open at a time, the last
            one at once; sha1 over the body on a worker thread
3. verify   body longer than Upload-Length -> 413, checksum mismatch -> 460: the record is
            left as it was (its staged parts are left out of the completion; their numbers are
            never used again)
4. commit   the bytes short of a part (if any) go to a new tail object
            ``tus/tail-<offset>-<request>``; then one CAS moves the offset, adds the parts,
            names the tail and drops the lock.  Only then is the new Upload-Offset answered:
            it is durable.
5. finish   when offset == length: CompleteMultipartUpload (If-None-Match on the source),
            delete the tus/ scratch, CAS to ``uploaded`` and wake the worker.  A crash between
            the full-offset CAS and the end leaves a full upload that HEAD, PATCH or
            :func:`expire_uploads` finish.

A PATCH cut off by its client (the handler is cancelled) keeps what it fully received when it
carried no checksum: shielded, it uploads its parts in flight, writes the rest as a part or the
tail and makes that offset durable.  With a checksum nothing of it is kept (it cannot be verified).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import OrderedDict
from typing import Any, AsyncIterator, Callable

import trio

import storage

from node.records import layout, lifecycle

from node import log

from node.upload import tus
from node.records.lifecycle import Record, Refused
from node.upload.tus import TusError
from node.upload.tus_patch import Feed, Patch, ms_since
from node.records.store import VideoStore

SALVAGE_SECONDS = 30.0  # time a cut-off PATCH may spend making what it received durable


# Record versions this node wrote, kept to CAS the next change without a read: at most this many
# records, and this many parts in all (a part is ~0.4 KiB as Python objects: ~40 MiB at most).
KNOWN_RECORDS = 256
KNOWN_PARTS = 100_000


class TusUploads:
    def __init__(self, videos: VideoStore, node_id: str, *, part_size: int, lock_ttl: float,
                 expiry: float, parts_in_flight: int = 2, min_part: int = tus.MIN_PART,
                 clock: Callable[[], float] = time.time,
                 alive: Callable[[str], bool] = lambda _: True,
                 on_uploaded: Callable[[str], None] = lambda _: None) -> None:
        self.videos = videos
        self.store = videos.store
        self.node_id = node_id
        self.part_size = part_size
        self.lock_ttl = lock_ttl
        self.expiry = expiry
        self.parts_in_flight = max(1, parts_in_flight)
        self.min_part = min_part
        self.clock = clock
        self.alive = alive
        self.on_uploaded = on_uploaded
        self._known: OrderedDict[str, storage.Versioned] = OrderedDict()

    # ---- reads ------------------------------------------------------------------------------------
    async def get(self, vid: str) -> Record:
        v = await self.videos.get(vid)
        if v is None:
            raise TusError(404, "not_found", "no such upload")
        return v.doc

    async def status(self, vid: str) -> tuple[int, int, Record]:
        """HEAD: (offset, length, record); finishes a full upload a crash left unfinished."""
        rec = await self.get(vid)
        if rec["state"] == lifecycle.UPLOADING and rec.get("upload") and tus.is_full(rec["upload"]):
            rec = await self.finish(vid)
        off, length = tus.offset_of(rec)
        return off, length, rec

    # ---- creation -------------------------------------------------------------------------------
    async def create(self, length: int, metadata: dict[str, str | None],
                     filename: str | None) -> Record:
        vid = layout.new_id(self.clock())
        now = self.clock()
        if length == 0:  # nothing will ever be PATCHed: the video is uploaded now
            await self.store.put(layout.source_key(vid), b"", if_none_match=True)
            rec = lifecycle.new_record(vid, self.node_id, now, state=lifecycle.UPLOADED, filename=filename,
                                       size=0, sha256=hashlib.sha256(b"").hexdigest(), upload=None)
            await self.videos.create(rec)
            self.on_uploaded(vid)
            return rec
        part_size = tus.choose_part_size(length, self.part_size, self.min_part)
        upload_id = await self.store.create_multipart(layout.source_key(vid))
        up = tus.new_upload(upload_id, length, metadata, part_size, now, self.expiry)
        rec = lifecycle.new_record(vid, self.node_id, now, state=lifecycle.UPLOADING, filename=filename,
                                   size=length, upload=up)
        try:
            await self.videos.create(rec)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._quietly(self.store.abort_multipart(layout.source_key(vid), upload_id))
            raise
        return rec

    # ---- PATCH ----------------------------------------------------------------------------------------
    async def patch(self, vid: str, *, offset: int, body: AsyncIterator[bytes],
                    checksum: tuple[str, bytes] | None = None, request: str | None = None,
                    content_length: int | None = None) -> Record:
        """Append ``body`` at ``offset``; returns the record with the new durable offset.

        Raises TusError: 404/410 (no upload), 409 (offset mismatch, locked, lock lost, complete),
        413 (beyond Upload-Length), 460 (checksum mismatch).  StorageError passes through.
        """
        request = request or uuid.uuid4().hex[:12]
        st = Patch(vid, request, offset, checksum, body_length=content_length, salvageable=checksum is None)
        finished = False
        try:
            await self._stream(st, body)
            if st.refusal is not None:
                return await self._refused(st)
            if st.lock_lost:
                raise TusError(409, "lock_lost", "this PATCH lost its lock on the upload; resume from HEAD")
            if st.error is not None:
                raise st.error
            if checksum is not None:
                await trio.to_thread.run_sync(st.hash_rest)
                if st.hasher.digest() != checksum[1]:
                    st.salvageable = False
                    raise TusError(460, "checksum_mismatch", "the body's sha1 does not match Upload-Checksum; "
                                   "nothing of this PATCH was kept")
            st.salvageable = False  # from here on the commit below is the only way forward
            rec = await self._commit(st)
            finished = True
        finally:
            if not finished and st.up is not None:
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(SALVAGE_SECONDS):
                        await self._salvage_or_release(st)
            with trio.CancelScope(shield=True):
                for part in st.inflight.values():  # not salvaged: drop their connections
                    await part.writer.abort()
        if tus.is_full(rec["upload"]):
            rec = await self.finish(vid)
        return rec

    async def _refused(self, st: Patch) -> Record:
        """The lock was refused: raise the protocol's answer, unless the upload is complete and
        this is a retry of its final PATCH (whose answer was lost): then answer it again."""
        e = st.refusal
        assert e is not None
        if e.code == "upload_full":  # a crash left it unfinished: finish, then answer as complete
            await self.finish(st.vid)
        elif e.code != "upload_complete":
            raise e
        rec = await self.get(st.vid)
        off, _ = tus.offset_of(rec)
        if off == st.offset:
            return rec
        raise TusError(409, "offset_mismatch", f"Upload-Offset {st.offset} does not match the upload's "
                       f"offset {off} (it is complete)")

    async def _stream(self, st: Patch, body: AsyncIterator[bytes]) -> None:
        """Take the lock and receive the body meanwhile; once the lock is ours, send the body's
        parts to storage as their bytes arrive.  With Content-Length a part's size is known before
        its bytes are here (:func:`tus.planned_part`), so it is opened at its first byte and fed
        chunk by chunk; without it, a part is sent once it is buffered whole (:func:`tus.cut_size`).
        At most ``parts_in_flight`` parts are open at once, except the PATCH's last, which starts
        at once."""
        t0 = time.perf_counter()
        locked = trio.Event()
        to_hash, hash_queue = trio.open_memory_channel[list[memoryview]](self.parts_in_flight + 2)
        async with trio.open_nursery() as n:
            renewing = trio.CancelScope()
            n.start_soon(self._lock_and_renew, st, locked, n.cancel_scope, renewing)
            async with trio.open_nursery() as work:
                if st.checksum is not None:
                    work.start_soon(Feed.hash_loop, st, hash_queue)
                async with to_hash, trio.open_nursery() as parts:
                    feed = Feed(self.store, st, parts, to_hash, trio.Semaphore(self.parts_in_flight))
                    async for chunk in body:
                        if st.error is not None:
                            break
                        st.received += len(chunk)
                        rest = await feed.into_part(chunk)
                        if rest is not None:
                            st.buf.add(rest)
                        # Invariant: every received byte is in buf, inflight or done (salvage needs it)
                        if not locked.is_set():
                            if st.buf.size < self.min_part:
                                continue  # receive up to a part while the lock is being taken
                            await locked.wait()
                        if st.beyond_length():
                            break
                        await feed.open_parts(ended=False)
                    else:
                        await locked.wait()
                        if not st.beyond_length():
                            await feed.open_parts(ended=True)
                    st.ms["receive"] = ms_since(t0)
                    # bytes received but not yet passed on to storage when the body ended
                    st.backlog = sum(p.filled - p.writer.sent for p in st.inflight.values())
            renewing.cancel()
        st.ms["drain"] = ms_since(t0) - st.ms.get("receive", 0.0)

    async def _lock_and_renew(self, st: Patch, locked: trio.Event, scope: trio.CancelScope,
                              renewing: trio.CancelScope) -> None:
        """Take the lock (a refusal or failure cancels the PATCH), read the old tail, then renew
        the lock every third of its time until ``renewing`` is cancelled."""
        t0 = time.perf_counter()
        try:
            rec = await self._cas(st.vid, lambda r: tus.take_lock(
                r, holder=self.node_id, request=st.request, offset=st.offset, now=self.clock(),
                ttl=self.lock_ttl, alive=self.alive, body_length=st.body_length))
        except TusError as e:
            st.refusal, st.salvageable = e, False
            scope.cancel()
            return
        except storage.StorageError as e:
            st.error, st.salvageable = e, False
            scope.cancel()
            return
        up = rec["upload"]
        st.next_n = up["lock"]["first"]  # this lock's own part numbers (fencing: tus.take_lock)
        st.last_n = up["lock"]["last"]
        st.up = up  # ours: from here on a failure releases the lock (or salvages)
        if up["tail"]:
            try:
                tail, _ = await self.store.get(up["tail"]["key"])
                if len(tail) != up["tail"]["size"]:
                    raise storage.StorageError(f"tail object {up['tail']['key']} has {len(tail)} bytes, "
                                               f"the record says {up['tail']['size']}")
            except storage.StorageError as e:
                st.error, st.salvageable = e, False
                scope.cancel()
                return
            st.buf.put_tail_first(tail)  # before any part is cut: cutting waits for ``locked``
        st.ms["lock"] = ms_since(t0)
        locked.set()
        await self._renew_loop(st, scope, renewing)

    async def _renew_loop(self, st: Patch, scope: trio.CancelScope, renewing: trio.CancelScope) -> None:
        with renewing:
            while True:
                await trio.sleep(self.lock_ttl / 3)
                try:
                    await self._cas(st.vid, lambda r: tus.renew_lock(r, request=st.request, now=self.clock(),
                                                                     ttl=self.lock_ttl))
                except TusError:
                    st.lock_lost, st.salvageable = True, False
                    log.warning("tus_lock_lost", video=st.vid, request=st.request)
                    scope.cancel()
                    return
                except storage.StorageError as e:
                    log.warning("tus_lock_renew_failed", video=st.vid, error=str(e))

    async def _commit(self, st: Patch) -> Record:
        """Send what is still buffered (the last short part, or the tail) and CAS the new durable
        offset."""
        t0 = time.perf_counter()
        up = st.up
        new_offset = st.start + st.received
        key = layout.source_key(st.vid)
        for num in sorted(st.inflight):  # only after a cancellation: the parts that were cut off
            part = st.inflight.pop(num)
            await part.writer.abort()
            if part.full:  # all its bytes are here: send them once more, whole
                etag = await self.store.upload_part(key, up["upload_id"], num, storage.joined(part.pieces))
                st.done[num] = storage.Part(num, etag, part.writer.size)
            else:  # the part being fed (the last one): its bytes are cut again below
                st.buf.put_back(part.pieces, part.tail_bytes)
                st.next_n = num
        final = new_offset == up["length"]
        # ditto, or a body shorter than its Content-Length: the rest is a part if it may be one
        if size := tus.cut_size(st.buf.size, 0, part_size=up["part_size"], final=final):
            num, data, _ = st.cut(size)
            st.done[num] = storage.Part(num, await self.store.upload_part(key, up["upload_id"], num, data),
                                        len(data))
        parts = [{"n": p.number, "etag": p.etag, "size": p.size} for _, p in sorted(st.done.items())]
        tail: dict[str, Any] | None = None
        if st.buf.size:
            tail = {"key": tus.tail_key(st.vid, new_offset, st.request), "size": st.buf.size}
            await self.store.put(tail["key"], st.buf.take(st.buf.size)[0])
        try:
            rec = await self._cas(st.vid, lambda r: tus.advance(
                r, request=st.request, start=st.start, parts=parts, tail=tail, offset=new_offset,
                now=self.clock(), expiry=self.expiry))
        except BaseException:
            if tail is not None:
                with trio.CancelScope(shield=True):
                    await self._quietly(self.store.delete(tail["key"]))
            raise
        if up["tail"] and (tail is None or up["tail"]["key"] != tail["key"]):
            await self._quietly(self.store.delete(up["tail"]["key"]))
        st.ms["commit"] = ms_since(t0)
        log.info("tus_patch", video=st.vid, start=st.start, offset=new_offset, length=up["length"],
                 parts=len(rec["upload"]["parts"]), tail=tail["size"] if tail else 0, request=st.request,
                 ms=st.ms, backlog=st.backlog)
        return rec

    async def _salvage_or_release(self, st: Patch) -> None:
        """(Shielded.)  A cut-off PATCH without a checksum keeps what it received; else just unlock."""
        if st.salvageable and st.received > 0 and st.error is None:
            try:
                await self._commit(st)
                log.info("tus_patch_salvaged", video=st.vid, received=st.received, request=st.request)
                return
            except (TusError, storage.StorageError) as e:
                log.warning("tus_salvage_failed", video=st.vid, error=str(e))
        self._known.pop(st.vid, None)
        try:
            await self.videos.change(st.vid, lambda r: _or_keep(tus.release_lock(r, request=st.request)))
        except (Refused, storage.StorageError) as e:
            log.warning("tus_unlock_failed", video=st.vid, error=str(e))

    # ---- completion -------------------------------------------------------------------------------
    async def finish(self, vid: str) -> Record:
        """Assemble the source of a full upload and make the video ``uploaded`` (idempotent)."""
        self._known.pop(vid, None)
        rec = await self.get(vid)
        if rec["state"] != lifecycle.UPLOADING:
            return rec
        up = tus.upload_of(rec)
        if not tus.is_full(up):
            raise TusError(409, "upload_incomplete", f"only {up['offset']} of {up['length']} bytes are here")
        key = layout.source_key(vid)
        parts = [storage.Part(p["n"], p["etag"], p["size"]) for p in up["parts"]]
        try:
            # A PATCH that lost its lock may have staged a part after the one the record names
            # (docs/uploads.md, stale writers): AWS would refuse the completion, SeaweedFS would
            # assemble the stale bytes.  Refuse it here, loudly.
            staged = await self.store.list_parts(key, up["upload_id"])
            if bad := tus.stale_parts(up["parts"], [(p.number, p.etag) for p in staged]):
                log.error("tus_part_mismatch", video=vid, parts=bad[:20])
                raise storage.StorageError(f"{key}: staged parts {bad[:20]} are not the ones the record "
                                           "names; the upload cannot be assembled")
            await self.store.complete_multipart(key, up["upload_id"], parts, if_none_match=True)
        except (storage.NotFound, storage.PreconditionFailed):
            # completed before (a crash or a racer after the complete): the source must be whole
            info = await self.store.head(key)
            if info.size != up["length"]:
                raise storage.StorageError(f"{key} has {info.size} bytes, the upload {up['length']}")
        await self._quietly(self.store.delete_prefix(tus.tus_prefix(vid)))
        try:
            rec = await self.videos.change(vid, lambda r: tus.complete(r, self.node_id, self.clock()))
        except TusError:
            return await self.get(vid)  # someone else finished it
        log.info("tus_uploaded", video=vid, size=up["length"], parts=len(parts))
        self.on_uploaded(vid)
        return rec

    # ---- termination and expiry -----------------------------------------------------------------
    async def terminate(self, vid: str) -> Record:
        rec = await self.get(vid)
        if rec["state"] == lifecycle.DELETED:
            raise TusError(410, "gone", "this upload was already terminated")
        self._known.pop(vid, None)
        rec = await self._change(vid, lambda r: tus.terminate(r, self.node_id, self.clock()))
        await self.reclaim(vid)
        return rec

    async def reclaim(self, vid: str) -> None:
        """Free every object of a deleted upload: multipart parts, tails, source (record stays)."""
        await self.videos.purge(vid)

    async def expire(self, *, scan_limit: int = 1000) -> int:
        """Reclaim uploads idle past their expiry; finish full ones a crash left.  Returns how many
        were expired."""
        n = 0
        now = self.clock()
        for info in await self.store.list("pending/", limit=scan_limit):
            vid = info.key.removeprefix("pending/")
            if not layout.valid_id(vid):
                continue
            v = await self.videos.get(vid)
            if v is None or v.doc["state"] != lifecycle.UPLOADING or not v.doc.get("upload"):
                continue
            if tus.is_full(v.doc["upload"]):
                try:
                    await self.finish(vid)
                except storage.StorageError as e:  # e.g. stale parts: leave it, scan the others
                    log.warning("tus_finish_failed", video=vid, error=str(e))
                continue
            if not tus.expired(v.doc, now, self.alive):
                continue
            try:
                await self.videos.change(vid, lambda r: tus.expire(r, self.node_id, self.clock(), self.alive),
                                         event="upload_expired")
            except (Refused, storage.NotFound):
                continue
            await self.reclaim(vid)
            n += 1
        return n

    async def collect_orphan_multiparts(self, grace: float) -> int:
        """Abort multipart uploads under videos/ older than ``grace`` that no uploading record names
        (a node died between CreateMultipartUpload and its record, or a one-shot upload died)."""
        n = 0
        now = self.clock()
        for mp in await self.store.list_multipart_uploads("videos/"):
            if now - mp.initiated < grace:
                continue
            vid = mp.key.removeprefix("videos/").split("/", 1)[0]
            v = await self.videos.get(vid) if layout.valid_id(vid) else None
            up = v.doc.get("upload") if v is not None else None
            if v is not None and v.doc["state"] == lifecycle.UPLOADING and up and up["upload_id"] == mp.upload_id:
                continue
            await self._quietly(self.store.abort_multipart(mp.key, mp.upload_id))
            log.info("multipart_orphan_aborted", video=vid, key=mp.key, age=round(now - mp.initiated))
            n += 1
        return n

    # ---- plumbing -------------------------------------------------------------------------------------
    async def _cas(self, vid: str, step: Callable[[Record], Record]) -> Record:
        """Change the record by CAS like :meth:`_change`, but start from the version this node last
        wrote when it has one: a write with If-Match and no read.  If anyone changed the record
        since (412), or ``step`` refuses the remembered version, decide again on a fresh read."""
        key = layout.record_key(vid)
        known = self._known.pop(vid, None)
        if known is not None:
            try:
                new = step(known.doc)
                etag = await self.store.put(key, storage.cas.encode(new), if_match=known.etag,
                                            content_type="application/json")
                return self._remember(vid, storage.Versioned(new, etag))
            except (TusError, storage.PreconditionFailed):
                pass

        def decide(doc: Record | None) -> Record:
            if doc is None:
                raise TusError(404, "not_found", "no such upload")
            return step(doc)

        version, _ = await storage.cas.update(self.store, key, decide)
        assert version is not None
        return self._remember(vid, version)

    def _remember(self, vid: str, version: storage.Versioned) -> Record:
        self._known[vid] = version
        parts = sum(len((v.doc.get("upload") or {}).get("parts", ())) for v in self._known.values())
        while len(self._known) > KNOWN_RECORDS or (parts > KNOWN_PARTS and len(self._known) > 1):
            _, old = self._known.popitem(last=False)
            parts -= len((old.doc.get("upload") or {}).get("parts", ()))
        return version.doc

    async def _change(self, vid: str, step: Callable[[Record], Record]) -> Record:
        try:
            return await self.videos.change(vid, step)
        except storage.NotFound:
            raise TusError(404, "not_found", "no such upload") from None

    async def _quietly(self, aw: Any) -> None:
        try:
            await aw
        except storage.StorageError as e:
            log.warning("tus_cleanup_failed", error=str(e))


def _or_keep(rec: Record | None) -> Record:
    if rec is None:
        raise Refused("nothing_to_release", "no lock of ours")
    return rec


def for_context(ctx: Any) -> TusUploads:
    """The node's TusUploads, made once and kept on the context's counters' neighbour."""
    tu = getattr(ctx, "_tus_uploads", None)
    if tu is None:
        cfg = ctx.cfg
        tu = TusUploads(ctx.videos, ctx.node_id, part_size=cfg.storage.part_size,
                        lock_ttl=cfg.timing.lease_seconds, expiry=cfg.timing.upload_expiry,
                        parts_in_flight=cfg.storage.parts_in_flight, alive=ctx.alive,
                        on_uploaded=lambda _vid: ctx.worker.poke())
        ctx._tus_uploads = tu
    return tu


async def expire_uploads(ctx: Any) -> int:
    """Reclaim abandoned resumable uploads and orphan multipart uploads; call from the worker scan."""
    tu = for_context(ctx)
    n = await tu.expire()
    await tu.collect_orphan_multiparts(grace=ctx.cfg.timing.orphan_grace)
    return n
