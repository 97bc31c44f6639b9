"""Raw HTTP/1.1 requests to an S3 endpoint: kept-alive connections, SigV4 signing, answers.

aiobotocore (through trio-asyncio) costs a node ~1.5 ms of CPU per request and copies every body
once more; the two requests on the hot paths go around it here:

- UploadPart streamed while its bytes arrive (:class:`storage.parts.RawPartWriter`);
- a small PutObject, conditional or not (:meth:`RawS3.put`): the record CAS of every tus PATCH
  (lock and commit) and of every other state change.

Both are signed with SigV4 and ``UNSIGNED-PAYLOAD``, so the store uses them only where bodies
go unsigned anyway (TLS, or loopback; ``storage.s3.needs_payload_signing``).  Everything else
stays with aiobotocore.
"""

from __future__ import annotations

import ssl
import time
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlsplit

import trio
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config

from . import http1
from .connections import ConnectionClosed, ConnectionPool, quiet, read_head
from .errors import NotFound, PreconditionFailed, StorageError, StorageUnavailable
from .observe import Observer, ignore, timed

MAX_HEAD = http1.MAX_HEAD
MAX_ERROR_BODY = 64 * 1024
IDLE_SECONDS = 15.0  # an idle connection older than this is dropped, not reused
MAX_IDLE = 8
_UNSIGNED_BODY = Config(s3={"payload_signing_enabled": False})  # SigV4 with UNSIGNED-PAYLOAD


def canonical_query(params: dict[str, str]) -> str:
    """``k=v&...`` sorted by name, each value percent-encoded as SigV4 wants it.  Pure."""
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))


def parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    """Status and fields (lower-case names) of a response head without its blank line
    (:func:`storage.http1.parse_response_head`).  Raises StorageUnavailable.  Pure."""
    try:
        head = http1.parse_response_head(raw)
    except http1.ProtocolError as e:
        raise StorageUnavailable(str(e)) from None
    return head.status, head.headers


def error_code(body: bytes) -> str:
    """The ``<Code>`` of an S3 error document ('' when there is none).  Pure."""
    text = body.decode("utf-8", "replace")
    start = text.find("<Code>")
    end = text.find("</Code>", start)
    return text[start + 6:end].strip() if start >= 0 and end > start else ""


def put_error(what: str, status: int, body: bytes) -> StorageError:
    """The storage error for a non-2xx answer to a (conditional) PutObject.  Pure."""
    code = error_code(body)
    if status == 412 or code in ("PreconditionFailed", "ConditionalRequestConflict"):
        return PreconditionFailed(f"{what}: {code or status}")
    return answer_error(what, status, body)


def answer_error(what: str, status: int, body: bytes) -> StorageError:
    """The storage error for a non-2xx answer to an UploadPart.  Pure."""
    code = error_code(body)
    if status == 404 or code in ("NoSuchUpload", "NoSuchKey", "NoSuchBucket"):
        return NotFound(f"{what}: {code or status}")
    if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"):
        return StorageUnavailable(f"{what}: {code or status}")
    return StorageError(f"{what}: {code or status}")


class RawS3:
    """Raw HTTP/1.1 connections to one S3 endpoint, request signing, and small PUTs.

    ``credentials()`` returns botocore's frozen credentials (access key, secret key, token); it is
    asked at most once a minute.  ``observe`` is told the time of every request (:mod:`storage.observe`).
    """

    def __init__(self, endpoint_url: str, bucket: str, region: str,
                 credentials: Callable[[], Awaitable[Any]], *, connect_timeout: float = 5.0,
                 read_timeout: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 observe: Observer = ignore) -> None:
        url = urlsplit(endpoint_url)
        self.tls = url.scheme == "https"
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if self.tls else 80)
        self.netloc = url.netloc
        self.scheme = url.scheme
        self.prefix = f"{url.path.rstrip('/')}/{quote(bucket, safe='')}"
        self.region = region
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._credentials = credentials
        self._frozen: tuple[float, Any] | None = None
        self._clock = clock
        # one address: this endpoint; is_quiet looked up at call time (tests replace _quiet)
        self.pool = ConnectionPool(max_idle=MAX_IDLE, max_age=IDLE_SECONDS, clock=clock,
                                   is_quiet=lambda stream: _quiet(stream))
        self._ssl = ssl.create_default_context() if self.tls else None
        self.resent = 0  # statistics: parts whose stream failed and went again buffered
        self.observe = observe

    async def signed_head(self, method: str, key: str, query: dict[str, str],
                          headers: dict[str, str]) -> bytes:
        """The head of ``<method> <key>?<query>`` with ``headers``, signed (SigV4, the body unsigned)."""
        path = f"{self.prefix}/{quote(key, safe='/~')}"
        target = f"{path}?{canonical_query(query)}" if query else path
        req = AWSRequest(method=method, url=f"{self.scheme}://{self.netloc}{target}",
                         headers=headers)
        req.context["client_config"] = _UNSIGNED_BODY
        S3SigV4Auth(await self._creds(), "s3", self.region).add_auth(req)
        fields = [("Host", self.netloc)]
        fields += [(name, value) for name, value in req.headers.items() if name.lower() != "host"]
        return http1.encode_request_head(method, target, fields)

    async def request_head(self, key: str, upload_id: str, number: int, size: int) -> bytes:
        """The signed head of ``PUT <key>?partNumber=&uploadId=`` (UploadPart)."""
        return await self.signed_head("PUT", key, {"partNumber": str(number), "uploadId": upload_id},
                                      {"Content-Length": str(size)})

    async def put(self, key: str, body: bytes, *, if_none_match: bool = False,
                  if_match: str | None = None, content_type: str | None = None) -> str:
        """PutObject of a small body in one request; returns the ETag.  Raises PreconditionFailed
        (412, or 409 ConditionalRequestConflict), NotFound, StorageUnavailable, StorageError.

        A kept connection the server closed meanwhile is found out only when the answer does not
        come; then the request is sent once more on a new connection (as botocore retries it)."""
        headers = {"Content-Length": str(len(body))}
        if content_type:
            headers["Content-Type"] = content_type
        if if_match is not None:
            headers["If-Match"] = if_match
        if if_none_match:
            headers["If-None-Match"] = "*"
        with timed(self.observe, "cas" if if_none_match or if_match is not None else "put"):
            return await self._put(key, body, headers)

    async def _put(self, key: str, body: bytes, headers: dict[str, str]) -> str:
        what = f"put {key}"
        for attempt in range(2):
            stream = self._take_idle()
            reused = stream is not None
            try:
                with trio.fail_after(self.read_timeout):
                    if stream is None:
                        stream = await self._open()
                    await stream.send_all(await self.signed_head("PUT", key, {}, headers) + body)
                    status, fields, answer = await read_answer(stream)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
                    StorageUnavailable) as e:
                if stream is not None:
                    await trio.aclose_forcefully(stream)
                if reused and attempt == 0 and not isinstance(e, trio.TooSlowError):
                    continue
                raise StorageUnavailable(f"{what}: {type(e).__name__}: {e}") from None
            await self.release(stream, status, fields)
            if 200 <= status < 300 and "etag" in fields:
                return fields["etag"]
            raise put_error(what, status, answer)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _creds(self) -> Any:
        now = self._clock()
        if self._frozen is None or now - self._frozen[0] > 60.0:
            self._frozen = (now, await self._credentials())
        return self._frozen[1]

    async def connect(self) -> trio.abc.Stream:
        """An idle connection that is still open, or a new one."""
        stream = self._take_idle()
        return stream if stream is not None else await self._open()

    @property
    def _idle(self) -> list[tuple[float, trio.abc.Stream]]:
        """The pool's idle connections to this endpoint (the live list)."""
        return self.pool.idle(self.netloc)

    def _take_idle(self) -> trio.abc.Stream | None:
        return self.pool.take(self.netloc)

    async def _open(self) -> trio.abc.Stream:
        with trio.fail_after(self.connect_timeout):
            if self._ssl is not None:
                return await trio.open_ssl_over_tcp_stream(self.host, self.port, ssl_context=self._ssl,
                                                           https_compatible=True)
            return await trio.open_tcp_stream(self.host, self.port)

    async def release(self, stream: trio.abc.Stream, status: int, fields: dict[str, str]) -> None:
        """After an answer: keep the connection for the next request, unless the server closes it
        or the answer was an error (the server may not have read our whole body)."""
        reusable = fields.get("connection", "").lower() != "close" and status < 300
        await self.pool.give_back(self.netloc, stream, reusable=reusable)

    async def aclose(self) -> None:
        await self.pool.aclose()


_quiet = quiet  # module-level so a test can pretend a closed connection still looks quiet


async def read_answer(stream: trio.abc.Stream) -> tuple[int, dict[str, str], bytes]:
    """One response: status, fields and (bounded) body."""
    buf = http1.HeadBuffer()
    try:
        raw = await read_head(stream, buf)
    except http1.ProtocolError as e:
        raise StorageUnavailable(f"answer {e}") from None
    except ConnectionClosed as e:
        raise StorageUnavailable(str(e)) from None
    status, fields = parse_head(raw)
    body = bytearray(buf.data)
    if fields.get("transfer-encoding", "").lower() == "chunked":
        fields["connection"] = "close"  # not worth decoding: read what fits, drop the connection
        length = MAX_ERROR_BODY
    else:
        try:
            length = http1.content_length(fields) or 0
        except http1.ProtocolError as e:
            raise StorageUnavailable(f"answer {e}") from None
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
