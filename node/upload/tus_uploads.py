"""The tus upload service: create, HEAD, PATCH (bodies streamed into multipart parts and a tail
object), finish, terminate and expire resumable uploads against storage.

One PATCH, on any node:

1. lock     CAS the record: ``upload.lock = {holder, request, expires, first, last}`` if no live
            lock and the client's Upload-Offset equals the durable offset (else 409); renewed
            every ttl/3.  ``first..last``: part numbers no lock had before (fencing, tus.take_lock).
            The CAS starts from the record version this node wrote last (``storage.cas.update``
            with ``known``: If-Match, no read);
            the body is received meanwhile, up to one part.
2. stream   the old tail's bytes, then the body, go into parts (:mod:`node.upload.tus_patch`): with
            Content-Length whole parts and a last one that takes the rest (no tail), each sent
            to storage while its bytes arrive; ``parts_in_flight`` open at a time, the last
            one at once; sha1 over the body on a worker thread
3. verify   body longer than Upload-Length (BeyondUploadLength), checksum mismatch
            (ChecksumMismatch): the record is
            left as it was (its staged parts are left out of the completion; their numbers are
            never used again)
4. commit   the bytes short of a part (if any) go to a new tail object
            ``tus/tail-<offset>-<request>``; then one CAS moves the offset, adds the parts,
            names the tail and drops the lock.  Only then is the new Upload-Offset answered:
            it is durable.
5. finish   when offset == length: CompleteMultipartUpload (If-None-Match on the source),
            delete the tus/ scratch, CAS to ``uploaded`` and wake the worker.  A crash between
            the full-offset CAS and the end leaves a full upload that HEAD, PATCH or
            :meth:`TusUploads.housekeep` finish.

A PATCH cut off by its client (the handler is cancelled) keeps what it fully received when it
carried no checksum: shielded, it uploads its parts in flight, writes the rest as a part or the
tail and makes that offset durable.  With a checksum nothing of it is kept (it cannot be verified).

Refusals are :mod:`node.upload.errors` (the HTTP edge maps them to answers); StorageError passes
through.  A streamed part that had to be sent again is logged ``storage_part_resent``.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import OrderedDict
from typing import Any, AsyncIterator, Callable, Mapping

import trio

import storage

from node import log
from node.records import VideoStore, layout, lifecycle
from node.records.lifecycle import Record, Refused
from node.upload import tus
from node.upload.errors import (ChecksumMismatch, LockLost, OffsetMismatch, UploadComplete, UploadFull,
                                UploadGone, UploadIncomplete, UploadNotFound, UploadRefused)
from node.upload.tus_patch import PatchInProgress, ms_since

SALVAGE_SECONDS = 30.0  # time a cut-off PATCH may spend making what it received durable


# Record versions this node wrote, kept to CAS the next change without a read: at most this many
# records, and this many parts in all (a part is ~0.4 KiB as Python objects: ~40 MiB at most).
KNOWN_RECORDS = 256
KNOWN_PARTS = 100_000


def log_part_resent(what: str, why: str) -> None:
    """``on_resend`` of the parts fed here: a streamed part that had to be sent again."""
    log.warning("storage_part_resent", what=what, error=why)


class TusUploads:
    """The node's resumable uploads; made once at start.

    ``videos``: the records; ``part_size``/``parts_in_flight``: ``cfg.storage``; ``lock_ttl``:
    a PATCH's lock time (``cfg.timing.lease_seconds``); ``expiry``: an idle upload's life
    (``cfg.timing.upload_expiry``); ``alive(node_id)``: the membership view (a dead holder's lock
    is taken over); ``on_uploaded(video_id)``: an upload became ``uploaded`` (wake the worker);
    ``on_patch(ms)``: a PATCH was committed, with its phase times in milliseconds (``lock``,
    ``receive``, ``drain``, ``commit``: the node's metrics).
    """

    def __init__(self, videos: VideoStore, node_id: str, *, part_size: int, lock_ttl: float,
                 expiry: float, parts_in_flight: int = 2, min_part: int = storage.MIN_PART,
                 clock: Callable[[], float] = time.time,
                 alive: Callable[[str], bool] = lambda _: True,
                 on_uploaded: Callable[[str], None] = lambda _: None,
                 on_resend: storage.OnResend = log_part_resent,
                 on_patch: Callable[[Mapping[str, float]], None] = lambda _ms: None) -> None:
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
        self.on_resend = on_resend
        self.on_patch = on_patch
        self._last_written: OrderedDict[str, storage.Versioned] = OrderedDict()

    # ---- reads ------------------------------------------------------------------------------------
    async def get(self, vid: str) -> Record:
        v = await self.videos.get(vid)
        if v is None:
            raise UploadNotFound("no such upload")
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
                await self._best_effort(self.store.abort_multipart(layout.source_key(vid), upload_id))
            raise
        return rec

    # ---- PATCH ----------------------------------------------------------------------------------------
    async def patch(self, vid: str, *, offset: int, body: AsyncIterator[bytes],
                    checksum: tuple[str, bytes] | None = None, request: str | None = None,
                    content_length: int | None = None) -> Record:
        """Append ``body`` at ``offset``; returns the record with the new durable offset.

        Refuses (node.upload.errors): UploadNotFound, UploadGone, OffsetMismatch, UploadLocked,
        LockLost, UploadComplete, UploadExhausted, BeyondUploadLength, ChecksumMismatch.
        StorageError passes through.
        """
        request = request or uuid.uuid4().hex[:12]
        st = PatchInProgress(vid, request, offset, checksum, body_length=content_length,
                             salvageable=checksum is None)
        finished = False
        try:
            await self._receive_into_parts(st, body)
            if st.refusal is not None:
                return await self._answer_refused_lock(st)
            if st.lock_lost:
                raise LockLost("this PATCH lost its lock on the upload; resume from HEAD")
            if st.error is not None:
                raise st.error
            if checksum is not None:
                await trio.to_thread.run_sync(st.hash_held_body)
                if st.hasher.digest() != checksum[1]:
                    st.salvageable = False
                    raise ChecksumMismatch("the body's sha1 does not match Upload-Checksum; "
                                           "nothing of this PATCH was kept")
            st.salvageable = False  # from here on the commit below is the only way forward
            rec = await self._commit(st)
            finished = True
        finally:
            if not finished and st.up is not None:
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(SALVAGE_SECONDS):
                        await self._salvage_or_release(st)
            if st.parts is not None:
                with trio.CancelScope(shield=True):
                    for part in st.parts.open.values():  # not salvaged: drop their connections
                        await part.writer.abort()
        if tus.is_full(rec["upload"]):
            rec = await self.finish(vid)
        return rec

    async def _answer_refused_lock(self, st: PatchInProgress) -> Record:
        """The lock was refused: raise the refusal, unless the upload is complete and this is a
        retry of its final PATCH (whose answer was lost): then answer it again."""
        e = st.refusal
        assert e is not None
        if isinstance(e, UploadFull):  # a crash left it unfinished: finish, then answer as complete
            await self.finish(st.vid)
        elif not isinstance(e, UploadComplete):
            raise e
        rec = await self.get(st.vid)
        off, _ = tus.offset_of(rec)
        if off == st.offset:
            return rec
        raise OffsetMismatch(f"Upload-Offset {st.offset} does not match the upload's offset {off} "
                             "(it is complete)")

    async def _receive_into_parts(self, st: PatchInProgress, body: AsyncIterator[bytes]) -> None:
        """Take the lock and receive the body meanwhile; once the lock is ours, send the body's
        parts to storage as their bytes arrive (:class:`storage.PartFeeder`).  With Content-Length
        a part's size is known before its bytes are here (:func:`tus.planned_part`), so it is opened
        at its first byte and fed chunk by chunk; without it, a part is sent once it is held whole
        (:func:`tus.cut_size`).  At most ``parts_in_flight`` parts are open at once, except the
        PATCH's last, which starts at once."""
        t0 = time.perf_counter()
        locked = trio.Event()
        key = layout.source_key(st.vid)

        def open_writer(number: int, size: int) -> storage.PartWriter:
            assert st.up is not None
            return self.store.part_writer(key, st.up["upload_id"], number, size, on_resend=self.on_resend)

        st.parts = storage.PartFeeder(open_writer, parts_in_flight=self.parts_in_flight,
                                      hasher=st.hasher if st.checksum is not None else None)
        async with trio.open_nursery() as n:
            renewing = trio.CancelScope()
            n.start_soon(self._lock_and_renew, st, locked, n.cancel_scope, renewing)
            async with st.parts:
                async for chunk in body:
                    if st.parts.error is not None:
                        break
                    st.receive(chunk)
                    # Invariant: every received byte is held, in an open part or in a done one
                    # (a salvage needs it)
                    if not locked.is_set():
                        if st.held.size < self.min_part:
                            continue  # receive up to a part while the lock is being taken
                        await locked.wait()
                    if st.beyond_length():
                        break
                    await st.open_parts(ended=False)
                else:
                    await locked.wait()
                    if not st.beyond_length():
                        await st.open_parts(ended=True)
                st.ms["receive"] = ms_since(t0)
                st.backlog = st.parts.backlog  # received, not yet passed on to storage at the end
            renewing.cancel()
        st.note_part_failure()
        st.ms["drain"] = ms_since(t0) - st.ms.get("receive", 0.0)

    async def _lock_and_renew(self, st: PatchInProgress, locked: trio.Event, scope: trio.CancelScope,
                              renewing: trio.CancelScope) -> None:
        """Take the lock (a refusal or failure cancels the PATCH), read the old tail, then renew
        the lock every third of its time until ``renewing`` is cancelled."""
        t0 = time.perf_counter()
        try:
            rec = await self._change_remembered(st.vid, lambda r: tus.take_lock(
                r, holder=self.node_id, request=st.request, offset=st.offset, now=self.clock(),
                ttl=self.lock_ttl, alive=self.alive, body_length=st.body_length))
        except UploadRefused as e:
            st.refusal, st.salvageable = e, False
            scope.cancel()
            return
        except storage.StorageError as e:
            st.error, st.salvageable = e, False
            scope.cancel()
            return
        up = rec["upload"]
        st.next_number = up["lock"]["first"]  # this lock's own part numbers (fencing: tus.take_lock)
        st.last_number = up["lock"]["last"]
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
            st.held.put_first_unhashed(tail)  # before any part is cut: cutting waits for ``locked``
        st.ms["lock"] = ms_since(t0)
        locked.set()
        await self._renew_loop(st, scope, renewing)

    async def _renew_loop(self, st: PatchInProgress, scope: trio.CancelScope,
                          renewing: trio.CancelScope) -> None:
        with renewing:
            while True:
                await trio.sleep(self.lock_ttl / 3)
                try:
                    await self._change_remembered(st.vid, lambda r: tus.renew_lock(
                        r, request=st.request, now=self.clock(), ttl=self.lock_ttl))
                except UploadRefused:
                    st.lock_lost, st.salvageable = True, False
                    log.warning("tus_lock_lost", video=st.vid, request=st.request)
                    scope.cancel()
                    return
                except storage.StorageError as e:
                    log.warning("tus_lock_renew_failed", video=st.vid, error=str(e))

    async def _commit(self, st: PatchInProgress) -> Record:
        """Send what is still held (the last short part, or the tail) and CAS the new durable
        offset."""
        t0 = time.perf_counter()
        up = st.up
        assert up is not None and st.parts is not None
        new_offset = st.offset + st.received
        key = layout.source_key(st.vid)
        done = st.parts.done
        for num in sorted(st.parts.open):  # only after a cancellation: the parts that were cut off
            part = st.parts.open.pop(num)
            await part.writer.abort()
            if part.full:  # all its bytes are here: send them once more, whole
                etag = await self.store.upload_part(key, up["upload_id"], num, storage.joined(part.pieces))
                done[num] = storage.Part(num, etag, part.writer.size)
            else:  # the part being fed (the last one): its bytes are cut again below
                st.held.put_back(part.pieces, part.unhashed)
                st.next_number = num
        final = new_offset == up["length"]
        # ditto, or a body shorter than its Content-Length: the rest is a part if it may be one
        if size := tus.cut_size(st.held.size, 0, part_size=up["part_size"], final=final):
            num, data = st.take_part(size)
            done[num] = storage.Part(num, await self.store.upload_part(key, up["upload_id"], num, data),
                                     len(data))
        parts = [{"n": p.number, "etag": p.etag, "size": p.size} for _, p in sorted(done.items())]
        tail: dict[str, Any] | None = None
        if st.held.size:
            tail = {"key": tus.tail_key(st.vid, new_offset, st.request), "size": st.held.size}
            await self.store.put(tail["key"], st.held.take(st.held.size)[0])
        try:
            rec = await self._change_remembered(st.vid, lambda r: tus.advance(
                r, request=st.request, start=st.offset, parts=parts, tail=tail, offset=new_offset,
                now=self.clock(), expiry=self.expiry))
        except BaseException:
            if tail is not None:
                with trio.CancelScope(shield=True):
                    await self._best_effort(self.store.delete(tail["key"]))
            raise
        if up["tail"] and (tail is None or up["tail"]["key"] != tail["key"]):
            await self._best_effort(self.store.delete(up["tail"]["key"]))
        st.ms["commit"] = ms_since(t0)
        log.info("tus_patch", video=st.vid, start=st.offset, offset=new_offset, length=up["length"],
                 parts=len(rec["upload"]["parts"]), tail=tail["size"] if tail else 0, request=st.request,
                 ms=st.ms, backlog=st.backlog)
        self.on_patch(st.ms)
        return rec

    async def _salvage_or_release(self, st: PatchInProgress) -> None:
        """(Shielded.)  A cut-off PATCH without a checksum keeps what it received; else just unlock."""
        if st.salvageable and st.received > 0 and st.error is None:
            try:
                await self._commit(st)
                log.info("tus_patch_salvaged", video=st.vid, received=st.received, request=st.request)
                return
            except (UploadRefused, storage.StorageError) as e:
                log.warning("tus_salvage_failed", video=st.vid, error=str(e))
        self._last_written.pop(st.vid, None)
        try:
            await self.videos.change(st.vid, lambda r: _or_keep(tus.release_lock(r, request=st.request)))
        except (Refused, storage.StorageError) as e:
            log.warning("tus_unlock_failed", video=st.vid, error=str(e))

    # ---- completion -------------------------------------------------------------------------------
    async def finish(self, vid: str) -> Record:
        """Assemble the source of a full upload and make the video ``uploaded`` (idempotent)."""
        self._last_written.pop(vid, None)
        rec = await self.get(vid)
        if rec["state"] != lifecycle.UPLOADING:
            return rec
        up = tus.upload_of(rec)
        if not tus.is_full(up):
            raise UploadIncomplete(f"only {up['offset']} of {up['length']} bytes are here")
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
        await self._best_effort(self.store.delete_prefix(tus.tus_prefix(vid)))
        try:
            rec = await self.videos.change(vid, lambda r: tus.complete(r, self.node_id, self.clock()))
        except UploadRefused:
            return await self.get(vid)  # someone else finished it
        log.info("tus_uploaded", video=vid, size=up["length"], parts=len(parts))
        self.on_uploaded(vid)
        return rec

    # ---- termination and expiry -----------------------------------------------------------------
    async def terminate(self, vid: str) -> Record:
        rec = await self.get(vid)
        if rec["state"] == lifecycle.DELETED:
            raise UploadGone("this upload was already terminated")
        self._last_written.pop(vid, None)
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
            await self._best_effort(self.store.abort_multipart(mp.key, mp.upload_id))
            log.info("multipart_orphan_aborted", video=vid, key=mp.key, age=round(now - mp.initiated))
            n += 1
        return n

    async def housekeep(self, *, orphan_grace: float) -> int:
        """The housekeeping pass (the node calls it every ``timing.housekeeping_interval``): reclaim
        abandoned uploads (:meth:`expire`) and orphan multipart uploads older than
        ``orphan_grace`` (:meth:`collect_orphan_multiparts`).  Returns how many uploads expired."""
        n = await self.expire()
        await self.collect_orphan_multiparts(grace=orphan_grace)
        return n

    # ---- plumbing -------------------------------------------------------------------------------------
    async def _change_remembered(self, vid: str, step: Callable[[Record], Record]) -> Record:
        """Change the record by CAS (:func:`storage.cas.update`), starting from the version this
        node wrote last when it has one (``known``: If-Match, no read); the loop decides again on
        a fresh read if anyone changed the record since or ``step`` refuses the remembered one."""

        def decide(doc: Record | None) -> Record:
            if doc is None:
                raise UploadNotFound("no such upload")
            return step(doc)

        known = self._last_written.pop(vid, None)
        version, _ = await storage.cas.update(self.store, layout.record_key(vid), decide, known=known)
        assert version is not None
        return self._remember(vid, version)

    def _remember(self, vid: str, version: storage.Versioned) -> Record:
        """Keep the version this node wrote (bounded: KNOWN_RECORDS records, KNOWN_PARTS parts)."""
        self._last_written[vid] = version
        remembered = self._last_written
        parts = sum(len((v.doc.get("upload") or {}).get("parts", ())) for v in remembered.values())
        while len(remembered) > KNOWN_RECORDS or (parts > KNOWN_PARTS and len(remembered) > 1):
            _, old = remembered.popitem(last=False)
            parts -= len((old.doc.get("upload") or {}).get("parts", ()))
        return version.doc

    async def _change(self, vid: str, step: Callable[[Record], Record]) -> Record:
        try:
            return await self.videos.change(vid, step)
        except storage.NotFound:
            raise UploadNotFound("no such upload") from None

    async def _best_effort(self, aw: Any) -> None:
        """Cleanup that may fail (logged): leftovers are collected later."""
        try:
            await aw
        except storage.StorageError as e:
            log.warning("tus_cleanup_failed", error=str(e))


def _or_keep(rec: Record | None) -> Record:
    if rec is None:
        raise Refused("nothing_to_release", "no lock of ours")
    return rec
