"""One multipart part sent while its bytes are still arriving, and S3's limits on parts.

``MIN_PART`` and ``MAX_PARTS`` are S3's: every part but the last is at least 5 MiB, and an upload
has at most 10,000 parts (numbers 1..10,000).  They are defined here and nowhere else.

A :class:`PartWriter` is opened with the part's exact size, fed its bytes in order with
:meth:`PartWriter.send`, and ended with :meth:`PartWriter.finish`, which returns the part's ETag.
Feeding and finishing may happen in different tasks (a PATCH feeds the next part while the last
one's answer is awaited).  The writer keeps references to the bytes it was given until it ends:
a failed stream is sent again as one ``upload_part`` (with the store's own retries), and a caller
cut off mid-part can take the bytes back (:attr:`PartWriter.chunks`) to keep them elsewhere.
Memory per writer is therefore the part's size, as for a buffered part.

Two kinds:

- :class:`BufferedPartWriter`: collects the bytes and calls ``store.upload_part`` at the end.
  Every store has it (``ObjectStore.part_writer``); the in-memory store uses it in unit tests.
- :class:`RawPartWriter`: S3's UploadPart over one raw HTTP/1.1 connection, signed with SigV4 and
  ``UNSIGNED-PAYLOAD``, the body written to the socket chunk by chunk as it arrives.  S3 starts
  storing a part at its first byte rather than after the whole part was received, and no body
  is copied or hashed on the way (aiobotocore copied each part once more and spent ~2 CPU-s per
  GiB on it; this path spends ~0.5; docs/benchmarks.md).  :class:`storage.raw.RawS3` holds its
  connections and signs the requests.  A stream that failed and was sent again is told to the
writer's ``on_resend(what, why)`` callback, given by whoever opened the part (the node logs it).
"""

from __future__ import annotations

import abc
from typing import Any, Awaitable, Callable, Iterable

import trio

from .errors import StorageError, StorageUnavailable
from .observe import timed
from .raw import RawS3, answer_error, read_answer

MIN_PART = 5 * 1024 * 1024  # S3's smallest part (but the last)
MAX_PARTS = 10_000  # S3's part numbers: 1..10,000

Piece = bytes | memoryview
# Told that a streamed part failed and was sent again: ``on_resend(what, why)``.
OnResend = Callable[[str, str], None]


def no_resend_report(what: str, why: str) -> None:
    """The default ``on_resend``: tell nobody."""


class PartWriter(abc.ABC):
    """Part ``number`` of a multipart upload, exactly ``size`` bytes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0
        self.chunks: list[bytes | memoryview] = []

    @property
    def full(self) -> bool:
        return self.sent == self.size

    async def send(self, data: bytes | memoryview) -> None:
        """The next bytes of the part, in order; never more than the part has left."""
        if self.sent + len(data) > self.size:
            raise ValueError(f"{len(data)} bytes do not fit: {self.size - self.sent} left of the part")
        self.chunks.append(data)
        self.sent += len(data)
        await self._stream(data)

    async def _stream(self, data: bytes | memoryview) -> None:
        """Pass the bytes on as they come (the buffered writer keeps them for :meth:`finish`)."""

    @abc.abstractmethod
    async def finish(self) -> str:
        """After the last byte: the part's ETag.  Raises StorageError (NotFound: upload gone)."""

    async def abort(self) -> None:
        """Give up on the part (its bytes stay in :attr:`chunks`)."""


class BufferedPartWriter(PartWriter):
    def __init__(self, upload: Callable[[bytes], Awaitable[str]], size: int) -> None:
        super().__init__(size)
        self._upload = upload

    async def finish(self) -> str:
        if not self.full:
            raise ValueError(f"part ended at {self.sent} of {self.size} bytes")
        return await self._upload(joined(self.chunks))


def joined(chunks: list[Piece]) -> bytes:
    """The pieces as one ``bytes`` (one copy)."""
    return bytes(chunks[0]) if len(chunks) == 1 else b"".join(chunks)


def hash_pieces(hasher: Any, pieces: Iterable[Piece]) -> None:
    """Feed ``pieces`` to ``hasher`` in order (run it on a worker thread: hashlib lets go of the
    GIL for big buffers)."""
    for piece in pieces:
        hasher.update(piece)


class RawPartWriter(PartWriter):
    """UploadPart streamed over a raw connection; a failed stream falls back to ``fallback``
    (one buffered ``upload_part`` with the store's retries)."""

    def __init__(self, raw: RawS3, key: str, upload_id: str, number: int, size: int,
                 fallback: Callable[[bytes], Awaitable[str]], on_resend: OnResend = no_resend_report,
                 ) -> None:
        super().__init__(size)
        self._on_resend = on_resend
        self._raw = raw
        self._what = f"upload part {number} of {key}"
        self._args = (key, upload_id, number, size)
        self._fallback = fallback
        self._stream_: trio.abc.Stream | None = None
        self._broken: str | None = None  # why streaming stopped; finish() falls back

    async def _stream(self, data: bytes | memoryview) -> None:
        if self._broken is not None:
            return
        try:
            with trio.fail_after(self._raw.read_timeout):
                if self._stream_ is None:
                    self._stream_ = await self._raw.connect()
                    head = await self._raw.request_head(*self._args)
                    await self._stream_.send_all(head)
                await self._stream_.send_all(data)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError) as e:
            await self._drop(f"{type(e).__name__}: {e}")

    async def finish(self) -> str:
        if not self.full:
            raise ValueError(f"part ended at {self.sent} of {self.size} bytes")
        if self._broken is None:
            stream = self._stream_
            if stream is None:  # an empty part: nothing was streamed
                await self._stream(b"")
                stream = self._stream_
            try:
                with trio.fail_after(self._raw.read_timeout), timed(self._raw.observe, "upload_part_stream"):
                    status, fields, body = await read_answer(stream)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
                    StorageUnavailable) as e:
                await self._drop(f"{type(e).__name__}: {e}")
            else:
                self._stream_ = None
                await self._raw.release(stream, status, fields)
                if 200 <= status < 300 and fields.get("etag"):
                    return fields["etag"]
                err = answer_error(self._what, status, body)
                if not isinstance(err, StorageUnavailable):
                    raise err
                self._broken = str(err)
        # The stream failed: send the part once more, buffered, through the store's own client.
        self._raw.resent += 1
        self._on_resend(self._what, self._broken or "")
        return await self._fallback(joined(self.chunks))

    async def _drop(self, why: str) -> None:
        self._broken = why
        if self._stream_ is not None:
            stream, self._stream_ = self._stream_, None
            await trio.aclose_forcefully(stream)

    async def abort(self) -> None:
        await self._drop("aborted")
