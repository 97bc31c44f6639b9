"""One multipart part sent while its bytes are still arriving.

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
  GiB on it; this path spends ~0.5; docs/benchmarks.md).  :class:`RawS3` holds its connections.
"""

from __future__ import annotations

import abc
import select
import ssl
import time
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlsplit

import trio

from .errors import NotFound, StorageError, StorageUnavailable


def _no_report(event: str, **fields: Any) -> None:
    return None


# A part whose stream failed is reported here (the node points it at its log: ``log.warning``).
report: Callable[..., None] = _no_report

MAX_HEAD = 16 * 1024
MAX_ERROR_BODY = 64 * 1024
IDLE_SECONDS = 15.0  # an idle connection older than this is dropped, not reused
MAX_IDLE = 8


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
        return await self._upload(_joined(self.chunks))


def _joined(chunks: list[bytes | memoryview]) -> bytes:
    return bytes(chunks[0]) if len(chunks) == 1 else b"".join(chunks)


def canonical_query(params: dict[str, str]) -> str:
    """``k=v&...`` sorted by name, each value percent-encoded as SigV4 wants it.  Pure."""
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))


def parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    """Status and fields (lower-case names) of a response head without its blank line.  Pure."""
    lines = raw.decode("latin-1").split("\r\n")
    first = lines[0].split(" ", 2)
    if len(first) < 2 or not first[0].startswith("HTTP/1.") or not first[1].isdigit():
        raise StorageUnavailable(f"malformed status line {lines[0][:80]!r}")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return int(first[1]), fields


def error_code(body: bytes) -> str:
    """The ``<Code>`` of an S3 error document ('' when there is none).  Pure."""
    text = body.decode("utf-8", "replace")
    start = text.find("<Code>")
    end = text.find("</Code>", start)
    return text[start + 6:end].strip() if start >= 0 and end > start else ""


def answer_error(what: str, status: int, body: bytes) -> StorageError:
    """The storage error for a non-2xx answer to an UploadPart.  Pure."""
    code = error_code(body)
    if status == 404 or code in ("NoSuchUpload", "NoSuchKey", "NoSuchBucket"):
        return NotFound(f"{what}: {code or status}")
    if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"):
        return StorageUnavailable(f"{what}: {code or status}")
    return StorageError(f"{what}: {code or status}")


class RawS3:
    """Raw HTTP/1.1 connections to one S3 endpoint, and the signing of UploadPart requests.

    ``credentials()`` returns botocore's frozen credentials (access key, secret key, token); it is
    asked at most once a minute.
    """

    def __init__(self, endpoint_url: str, bucket: str, region: str,
                 credentials: Callable[[], Awaitable[Any]], *, connect_timeout: float = 5.0,
                 read_timeout: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        url = urlsplit(endpoint_url)
        self.tls = url.scheme == "https"
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if self.tls else 80)
        self.netloc = url.netloc
        self.base = f"{url.scheme}://{url.netloc}{url.path.rstrip('/')}"
        self.prefix = f"{url.path.rstrip('/')}/{quote(bucket, safe='')}"
        self.region = region
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._credentials = credentials
        self._frozen: tuple[float, Any] | None = None
        self._idle: list[tuple[float, trio.abc.Stream]] = []
        self._clock = clock
        self._ssl = ssl.create_default_context() if self.tls else None
        self.resent = 0  # statistics: parts whose stream failed and went again buffered

    def writer(self, key: str, upload_id: str, number: int, size: int,
               fallback: Callable[[bytes], Awaitable[str]]) -> "RawPartWriter":
        return RawPartWriter(self, key, upload_id, number, size, fallback)

    async def request_head(self, key: str, upload_id: str, number: int, size: int) -> bytes:
        """The signed head of ``PUT <key>?partNumber=&uploadId=`` with an unsigned body."""
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.config import Config

        path = f"{self.prefix}/{quote(key, safe='/~')}"
        query = canonical_query({"partNumber": str(number), "uploadId": upload_id})
        req = AWSRequest(method="PUT", url=f"{self.base.split('://')[0]}://{self.netloc}{path}?{query}",
                         headers={"Content-Length": str(size)})
        req.context["client_config"] = Config(s3={"payload_signing_enabled": False})
        S3SigV4Auth(await self._creds(), "s3", self.region).add_auth(req)
        lines = [f"PUT {path}?{query} HTTP/1.1", f"Host: {self.netloc}"]
        lines += [f"{name}: {value}" for name, value in req.headers.items() if name.lower() != "host"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _creds(self) -> Any:
        now = self._clock()
        if self._frozen is None or now - self._frozen[0] > 60.0:
            self._frozen = (now, await self._credentials())
        return self._frozen[1]

    async def connect(self) -> trio.abc.Stream:
        """An idle connection that is still open, or a new one."""
        now = self._clock()
        while self._idle:
            since, stream = self._idle.pop()
            if now - since < IDLE_SECONDS and _quiet(stream):
                return stream
            await trio.aclose_forcefully(stream)
        with trio.fail_after(self.connect_timeout):
            if self._ssl is not None:
                return await trio.open_ssl_over_tcp_stream(self.host, self.port, ssl_context=self._ssl,
                                                           https_compatible=True)
            return await trio.open_tcp_stream(self.host, self.port)

    async def release(self, stream: trio.abc.Stream) -> None:
        if len(self._idle) < MAX_IDLE:
            self._idle.append((self._clock(), stream))
        else:
            await trio.aclose_forcefully(stream)

    async def aclose(self) -> None:
        while self._idle:
            await trio.aclose_forcefully(self._idle.pop()[1])


def _quiet(stream: trio.abc.Stream) -> bool:
    """No bytes and no EOF waiting on an idle connection (else the server closed it)."""
    sock = getattr(getattr(stream, "transport_stream", stream), "socket", None)
    if sock is None:
        return False
    readable, _, _ = select.select([sock.fileno()], [], [], 0)
    return not readable


async def read_answer(stream: trio.abc.Stream) -> tuple[int, dict[str, str], bytes]:
    """One response: status, fields and (bounded) body."""
    buf = bytearray()
    while (end := buf.find(b"\r\n\r\n")) < 0:
        if len(buf) > MAX_HEAD:
            raise StorageUnavailable("answer head over 16 KiB")
        data = await stream.receive_some(64 * 1024)
        if not data:
            raise StorageUnavailable("connection closed before the answer")
        buf += data
    status, fields = parse_head(bytes(buf[:end]))
    body = bytearray(buf[end + 4:])
    if fields.get("transfer-encoding", "").lower() == "chunked":
        fields["connection"] = "close"  # not worth decoding: read what fits, drop the connection
        length = MAX_ERROR_BODY
    else:
        length = int(fields.get("content-length", "0") or 0)
        if length > MAX_ERROR_BODY:
            raise StorageUnavailable(f"answer body of {length} bytes")
    with trio.move_on_after(1.0 if length == MAX_ERROR_BODY else 3600):
        while len(body) < length:
            data = await stream.receive_some(64 * 1024)
            if not data:
                if length == MAX_ERROR_BODY:
                    break
                raise StorageUnavailable("connection closed in the answer body")
            body += data
    return status, fields, bytes(body[:length])


class RawPartWriter(PartWriter):
    """UploadPart streamed over a raw connection; a failed stream falls back to ``fallback``
    (one buffered ``upload_part`` with the store's retries)."""

    def __init__(self, raw: RawS3, key: str, upload_id: str, number: int, size: int,
                 fallback: Callable[[bytes], Awaitable[str]]) -> None:
        super().__init__(size)
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
                with trio.fail_after(self._raw.read_timeout):
                    status, fields, body = await read_answer(stream)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
                    StorageUnavailable) as e:
                await self._drop(f"{type(e).__name__}: {e}")
            else:
                self._stream_ = None
                if fields.get("connection", "").lower() == "close" or status >= 300:
                    await trio.aclose_forcefully(stream)
                else:
                    await self._raw.release(stream)
                if 200 <= status < 300 and fields.get("etag"):
                    return fields["etag"]
                err = answer_error(self._what, status, body)
                if not isinstance(err, StorageUnavailable):
                    raise err
                self._broken = str(err)
        # The stream failed: send the part once more, buffered, through the store's own client.
        self._raw.resent += 1
        report("storage_part_resent", what=self._what, error=self._broken)
        return await self._fallback(_joined(self.chunks))

    async def _drop(self, why: str) -> None:
        self._broken = why
        if self._stream_ is not None:
            stream, self._stream_ = self._stream_, None
            await trio.aclose_forcefully(stream)

    async def abort(self) -> None:
        await self._drop("aborted")
