"""S3-compatible object store through aioboto3, run under trio with trio-asyncio.

Only standard S3 calls are used (conditional PutObject / CompleteMultipartUpload
with ``If-None-Match`` / ``If-Match``), so MinIO, AWS S3 and the embedded
SeaweedFS are interchangeable by configuration.

Use :func:`open_store` inside ``trio_asyncio.open_loop()``; every aiobotocore
coroutine runs on that loop via ``loop.run_aio_coroutine``.  Cleanup
(closing the client) is shielded from cancellation.

The raw path: HTTP/1.1 requests to the S3 endpoint, kept-alive connections, SigV4 signing.

aiobotocore (through trio-asyncio) costs a node ~1.5 ms of CPU per request and copies every body
once more; the two requests on the hot paths go around it here:

- UploadPart streamed while its bytes arrive (:class:`RawPartWriter`);
- a small PutObject, conditional or not (:meth:`RawS3.put`): the record CAS of every tus PATCH
  (lock and commit) and of every other state change.

Both are signed with SigV4 and ``UNSIGNED-PAYLOAD``, so the store uses them only where bodies
go unsigned anyway (TLS, or loopback; :func:`needs_payload_signing`).  Everything else
stays with aiobotocore.

The streamed part:

:class:`RawPartWriter`: S3's UploadPart over one raw HTTP/1.1 connection, signed with SigV4 and
  ``UNSIGNED-PAYLOAD``, the body written to the socket chunk by chunk as it arrives.  S3 starts
  storing a part at its first byte rather than after the whole part was received, and no body
  is copied or hashed on the way (aiobotocore copied each part once more and spent ~2 CPU-s per
  GiB on it; this path spends ~0.5; docs/benchmarks.md).  :class:`RawS3` holds its
  connections and signs the requests.  A stream that failed and was sent again is told to the
writer's ``on_resend(what, why)`` callback, given by whoever opened the part (the node logs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar
from urllib.parse import quote, urlsplit

import aioboto3
import botocore.config
import botocore.exceptions
import trio
import trio_asyncio
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config

from . import http1
from .errors import NotFound, PreconditionFailed, StorageError, StorageUnavailable
from .http1 import ConnectionClosed, ConnectionPool, quiet, read_head
from .store import (ignore, joined, MultipartInfo, no_resend_report, ObjectInfo, ObjectStore, Observer, OnResend, Part,
                    PartWriter, timed)


# ---- the raw path: signed HTTP/1.1 requests on kept-alive connections, and the streamed part -----

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
    asked at most once a minute.  ``observe`` is told the time of every request (:mod:`storage.store`).
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


# ---- the store: aiobotocore for everything, the raw path where it is cheaper ---------------------

T = TypeVar("T")

_NOT_FOUND = {"NoSuchKey", "NoSuchUpload", "NotFound", "404", "NoSuchBucket"}
_PRECONDITION = {"PreconditionFailed", "ConditionalRequestConflict", "412"}
_UNAVAILABLE_STATUS = {500, 502, 503, 504}
RAW_PUT_MAX = 16 << 20  # larger bodies go through aiobotocore (its retries resend them)


def _translate(exc: BaseException, what: str) -> StorageError:
    """The one place where botocore / aiohttp / OS errors become ours."""
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _PRECONDITION or status == 412:
            return PreconditionFailed(f"{what}: {code or status}")
        if code == "ConditionalRequestConflict" or (status == 409 and "Conditional" in code):
            return PreconditionFailed(f"{what}: {code}")
        if code in _NOT_FOUND or status == 404:
            return NotFound(f"{what}: {code or status}")
        if status in _UNAVAILABLE_STATUS or code in {"SlowDown", "ServiceUnavailable", "InternalError"}:
            return StorageUnavailable(f"{what}: {code or status}")
        return StorageError(f"{what}: {code} {err.get('Message', '')}".strip())
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError,
                        botocore.exceptions.ConnectionError,
                        botocore.exceptions.ReadTimeoutError,
                        botocore.exceptions.ConnectTimeoutError,
                        OSError, asyncio.TimeoutError)):
        return StorageUnavailable(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return StorageUnavailable(f"{what}: {type(exc).__name__}: {exc}")
    # aiohttp errors (ClientError family) without importing aiohttp at module level
    if type(exc).__module__.startswith("aiohttp"):
        return StorageUnavailable(f"{what}: {type(exc).__name__}: {exc}")
    return StorageError(f"{what}: {type(exc).__name__}: {exc}")


def _is_translatable(exc: BaseException) -> bool:
    return isinstance(exc, (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError,
                            OSError, asyncio.TimeoutError)) or type(exc).__module__.startswith("aiohttp")


class S3Store(ObjectStore):
    def __init__(self, client: Any, bucket: str, loop: Any, raw: RawS3 | None = None, *,
                 observe: Observer = ignore) -> None:
        self._client = client
        self._bucket = bucket
        self._loop = loop
        self._observe = observe  # told the time of every request (storage.store)
        self.requests = 0  # statistics: S3 calls issued
        self.raw = raw  # streams UploadPart bodies (RawPartWriter); None: every part is buffered

    async def _run(self, what: str, coro: Awaitable[T]) -> T:
        """Run one aiobotocore coroutine on the trio-asyncio loop, translating its errors."""
        try:
            return await self._loop.run_aio_coroutine(coro)
        except trio.Cancelled:
            raise
        except Exception as e:  # translated at the edge, see module docstring
            if _is_translatable(e):
                raise _translate(e, what) from e
            raise

    async def _call(self, op: str, what: str, fn: Callable[..., Awaitable[T]], **kw: Any) -> T:
        """One S3 request, timed as ``op`` (storage.store.OPERATIONS)."""
        self.requests += 1
        with timed(self._observe, op):
            return await self._run(what, fn(Bucket=self._bucket, **kw))

    # ---- single objects -------------------------------------------------------------------------
    async def get(self, key: str) -> tuple[bytes, str]:
        self.requests += 1
        with timed(self._observe, "get"):  # the body read included
            resp = await self._run(f"get {key}", self._client.get_object(Bucket=self._bucket, Key=key))
            body = await self._read_all(resp["Body"], key)
        return body, resp["ETag"]

    async def presign_get(self, key: str, expires: int = 3600) -> str | None:
        """A SigV4 query-signed GET URL (computed locally: no request is sent)."""
        return await self._run(f"presign {key}", self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=expires))

    async def _read_all(self, stream: Any, key: str) -> bytes:
        try:
            return await self._run(f"read {key}", stream.read())
        finally:
            stream.close()

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        self.requests += 1
        with timed(self._observe, "get"):  # the body read included
            resp = await self._run(f"get {key}", self._client.get_object(
                Bucket=self._bucket, Key=key, Range=f"bytes={start}-{end}"))
            return await self._read_all(resp["Body"], key)

    async def iter_object(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        resp = await self._call("get", f"get {key}", self._client.get_object, Key=key)
        stream = resp["Body"]
        try:
            while True:
                chunk = await self._run(f"read {key}", stream.read(chunk_size))
                if not chunk:
                    return
                yield chunk
        finally:
            stream.close()

    async def head(self, key: str) -> ObjectInfo:
        resp = await self._call("head", f"head {key}", self._client.head_object, Key=key)
        lm = resp.get("LastModified")
        return ObjectInfo(key, int(resp["ContentLength"]), resp["ETag"],
                          lm.timestamp() if lm else 0.0)

    async def put(self, key: str, body: bytes, *, if_none_match: bool = False,
                  if_match: str | None = None, content_type: str | None = None) -> str:
        if self.raw is not None and len(body) <= RAW_PUT_MAX:  # one raw request (storage.s3)
            self.requests += 1
            return await self.raw.put(key, body, if_none_match=if_none_match, if_match=if_match,
                                      content_type=content_type)
        kw: dict[str, Any] = {"Key": key, "Body": body}
        if if_none_match:
            kw["IfNoneMatch"] = "*"
        if if_match is not None:
            kw["IfMatch"] = if_match
        if content_type:
            kw["ContentType"] = content_type
        op = "cas" if if_none_match or if_match is not None else "put"
        resp = await self._call(op, f"put {key}", self._client.put_object, **kw)
        return resp["ETag"]

    async def delete(self, key: str) -> None:
        try:
            await self._call("delete", f"delete {key}", self._client.delete_object, Key=key)
        except NotFound:
            pass

    async def list(self, prefix: str, *, start_after: str | None = None,
                   limit: int = 1000) -> list[ObjectInfo]:
        kw: dict[str, Any] = {"Prefix": prefix, "MaxKeys": max(1, min(limit, 1000))}
        if start_after:
            kw["StartAfter"] = start_after
        resp = await self._call("list", f"list {prefix}", self._client.list_objects_v2, **kw)
        return [ObjectInfo(o["Key"], int(o["Size"]), o.get("ETag", ""),
                           o["LastModified"].timestamp() if o.get("LastModified") else 0.0)
                for o in resp.get("Contents", [])]

    # ---- multipart ----------------------------------------------------------------------------
    async def create_multipart(self, key: str, *, content_type: str | None = None) -> str:
        kw: dict[str, Any] = {"Key": key}
        if content_type:
            kw["ContentType"] = content_type
        resp = await self._call("create_multipart", f"create multipart {key}",
                                self._client.create_multipart_upload, **kw)
        return resp["UploadId"]

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        resp = await self._call("upload_part", f"upload part {number} of {key}", self._client.upload_part,
                                Key=key, UploadId=upload_id, PartNumber=number, Body=body)
        return resp["ETag"]

    def part_writer(self, key: str, upload_id: str, number: int, size: int, *,
                    on_resend: OnResend = no_resend_report) -> PartWriter:
        """Streamed over a raw connection when bodies go unsigned; else buffered (the default).
        A stream that failed is sent again, buffered, and told to ``on_resend(what, why)``."""
        if self.raw is None:
            return super().part_writer(key, upload_id, number, size)
        self.requests += 1
        return RawPartWriter(self.raw, key, upload_id, number, size,
                             fallback=lambda body: self.upload_part(key, upload_id, number, body),
                             on_resend=on_resend)

    async def frozen_credentials(self) -> Any:
        """botocore's current credentials of this client (for :class:`RawS3`)."""
        creds = self._client._request_signer._credentials  # aiobotocore keeps them here
        return await self._run("credentials", creds.get_frozen_credentials())

    async def complete_multipart(self, key: str, upload_id: str, parts: list[Part], *,
                                 if_none_match: bool = False) -> str:
        kw: dict[str, Any] = {
            "Key": key, "UploadId": upload_id,
            "MultipartUpload": {"Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]},
        }
        if if_none_match:
            kw["IfNoneMatch"] = "*"
        resp = await self._call("complete_multipart", f"complete multipart {key}",
                                self._client.complete_multipart_upload, **kw)
        return resp.get("ETag", "")

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            await self._call("abort_multipart", f"abort multipart {key}", self._client.abort_multipart_upload,
                             Key=key, UploadId=upload_id)
        except NotFound:
            pass

    async def list_parts(self, key: str, upload_id: str) -> list[Part]:
        parts: list[Part] = []
        marker = 0
        for _ in range(10_001 // 1000 + 1):  # S3 allows at most 10,000 parts
            resp = await self._call("list_parts", f"list parts {key}", self._client.list_parts, Key=key,
                                    UploadId=upload_id, PartNumberMarker=marker, MaxParts=1000)
            parts += [Part(int(p["PartNumber"]), p["ETag"], int(p.get("Size", 0)))
                      for p in resp.get("Parts", [])]
            if not resp.get("IsTruncated"):
                break
            marker = int(resp.get("NextPartNumberMarker", 0))
        return parts

    async def list_multipart_uploads(self, prefix: str, *, limit: int = 1000) -> list[MultipartInfo]:
        resp = await self._call("list_multipart", f"list multipart {prefix}",
                                self._client.list_multipart_uploads,
                                Prefix=prefix, MaxUploads=max(1, min(limit, 1000)))
        return [MultipartInfo(u["Key"], u["UploadId"],
                              u["Initiated"].timestamp() if u.get("Initiated") else 0.0)
                for u in resp.get("Uploads", [])]

    async def ensure_bucket(self) -> None:
        try:
            await self._call("bucket", "head bucket", self._client.head_bucket)
            return
        except (NotFound, StorageError) as e:
            if isinstance(e, StorageUnavailable):
                raise
        try:
            await self._call("bucket", "create bucket", self._client.create_bucket)
        except StorageError as e:
            if "BucketAlreadyOwnedByYou" not in str(e) and "BucketAlreadyExists" not in str(e):
                raise


def needs_payload_signing(endpoint_url: str) -> bool:
    """True for plain HTTP to anything but loopback: there the signature is the only integrity check."""
    from urllib.parse import urlsplit
    parts = urlsplit(endpoint_url)
    if parts.scheme == "https":
        return False
    return (parts.hostname or "") not in ("127.0.0.1", "localhost", "::1")


@contextlib.asynccontextmanager
async def open_store(endpoint_url: str, bucket: str, *, region: str = "us-east-1",
                     access_key: str | None = None, secret_key: str | None = None,
                     connect_timeout: float = 5.0, read_timeout: float = 60.0,
                     max_pool: int = 64, create_bucket: bool = True,
                     sign_payload: bool | None = None,
                     stream_parts: bool = True, observe: Observer = ignore) -> AsyncIterator[S3Store]:
    """An :class:`S3Store`; must be entered inside ``trio_asyncio.open_loop()``.

    ``sign_payload``: include each body's SHA-256 in the SigV4 signature.  None (default)
    signs only where nothing else protects the body: plain HTTP to a host other than
    loopback.  Over TLS or on 127.0.0.1 the per-part hash is skipped (UNSIGNED-PAYLOAD), which
    the profile of an upload showed to cost 14% of a node's CPU.

    ``stream_parts``: send multipart parts as their bytes arrive over raw connections
    (:mod:`storage.store`); only where bodies go unsigned, since a streamed body cannot be
    hashed before its head is sent.

    ``observe``: told the time of every request (:mod:`storage.store`).
    """
    if sign_payload is None:
        sign_payload = needs_payload_signing(endpoint_url)
    loop = asyncio.get_event_loop()
    if not isinstance(loop, trio_asyncio.TrioEventLoop):
        raise RuntimeError("open_store needs trio_asyncio.open_loop() around it")
    session = aioboto3.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                               region_name=region)
    cfg = botocore.config.Config(
        # SigV4 everywhere, presigned URLs included (botocore presigns S3 with SigV2 otherwise,
        # which AWS refuses in every region opened since 2014, and for every bucket since 2020)
        signature_version="s3v4",
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=connect_timeout, read_timeout=read_timeout,
        max_pool_connections=max_pool,
        s3={"addressing_style": "path", "payload_signing_enabled": sign_payload},
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
    )
    cm = session.client("s3", endpoint_url=endpoint_url, config=cfg)
    client = await loop.run_aio_coroutine(cm.__aenter__())
    store = S3Store(client, bucket, loop, observe=observe)
    # Raw requests sign with this client's credentials, found at a private attribute of
    # aiobotocore's signer: where it is missing (another aiobotocore), everything stays with it.
    signer = getattr(client, "_request_signer", None)
    if stream_parts and not sign_payload and hasattr(signer, "_credentials"):
        store.raw = RawS3(endpoint_url, bucket, region, store.frozen_credentials,
                          connect_timeout=connect_timeout, read_timeout=read_timeout, observe=observe)
    try:
        if create_bucket:
            await store.ensure_bucket()
        yield store
    finally:
        with trio.CancelScope(shield=True):
            if store.raw is not None:
                await store.raw.aclose()
            with trio.move_on_after(5):
                await loop.run_aio_coroutine(cm.__aexit__(None, None, None))
