"""S3-compatible object store through aioboto3, run under trio with trio-asyncio.

Only standard S3 calls are used (conditional PutObject / CompleteMultipartUpload
with ``If-None-Match`` / ``If-Match``), so MinIO, AWS S3 and the embedded
SeaweedFS are interchangeable by configuration.

Use :func:`open_store` inside ``trio_asyncio.open_loop()``; every aiobotocore
coroutine runs on that loop via ``loop.run_aio_coroutine``.  Cleanup
(closing the client) is shielded from cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import aioboto3
import botocore.config
import botocore.exceptions
import trio
import trio_asyncio

from .errors import NotFound, PreconditionFailed, StorageError, StorageUnavailable
from .observe import Observer, ignore, timed
from .parts import OnResend, PartWriter, RawPartWriter, no_resend_report
from .raw import RawS3
from .store import MultipartInfo, ObjectInfo, ObjectStore, Part

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
        self._observe = observe  # told the time of every request (storage.observe)
        self.requests = 0  # statistics: S3 calls issued
        self.raw = raw  # streams UploadPart bodies (storage.parts); None: every part is buffered

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
        """One S3 request, timed as ``op`` (storage.observe.OPERATIONS)."""
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
        if self.raw is not None and len(body) <= RAW_PUT_MAX:  # one raw request (storage.raw)
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
        """botocore's current credentials of this client (for :class:`storage.parts.RawS3`)."""
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
    (:mod:`storage.parts`); only where bodies go unsigned, since a streamed body cannot be
    hashed before its head is sent.

    ``observe``: told the time of every request (:mod:`storage.observe`).
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
