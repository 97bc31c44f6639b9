"""Why an upload request is refused: domain errors that say what happened, not how HTTP answers.

The HTTP edge maps each class to its status and code (``node.http.errors.ANSWERS``);
nothing in ``node.upload`` knows a status.  The tree::

    UploadRefused                       every refusal; ``message`` is for the client
    ├── TusVersionMissing               no Tus-Resumable header
    ├── TusVersionUnsupported           a Tus-Resumable other than 1.0.0
    ├── HeaderRefused(header): HeaderMissing | HeaderMalformed (below)
    ├── HeaderMissing(header)           a required header is absent (Upload-Length, Upload-Offset)
    ├── HeaderMalformed(header)         a header's value cannot be read (Upload-Length, -Offset,
    │                                   -Metadata, -Checksum)
    ├── ChecksumAlgorithmUnsupported    Upload-Checksum with an algorithm other than sha1
    ├── DeferredLengthUnsupported       Upload-Defer-Length
    ├── WrongContentType                a PATCH body not sent as application/offset+octet-stream
    ├── UploadTooLarge                  Upload-Length beyond the cluster's limit (Tus-Max-Size)
    ├── BeyondUploadLength              the body would go past Upload-Length
    ├── UploadNotFound                  no such upload
    ├── UploadGone                      terminated or expired (also: terminated during a PATCH)
    ├── UploadConflict                  the upload's state does not allow the request now:
    │   ├── OffsetMismatch              Upload-Offset is not the durable offset
    │   ├── UploadLocked                another PATCH holds the lock
    │   ├── LockLost                    this PATCH lost its lock (stale, taken over)
    │   ├── UploadComplete              the upload is complete
    │   ├── UploadFull                  every byte is here; it is being finished
    │   ├── UploadIncomplete            finishing was asked of an upload that is not full
    │   └── UploadExhausted             S3's part numbers are used up by failed PATCHes
    ├── ChecksumMismatch                the body's sha1 is not Upload-Checksum's
    └── one-shot uploads (node.upload.landing):
        ├── BodyTooShort                the body ended before Content-Length bytes
        ├── BodyTooLong                 the body went past Content-Length
        └── UploadInProgress            a concurrent upload with the same Idempotency-Key is finishing
"""

from __future__ import annotations


class UploadRefused(Exception):
    """An upload request refused by the rules; :attr:`message` explains it to the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TusVersionMissing(UploadRefused):
    pass


class TusVersionUnsupported(UploadRefused):
    pass


class HeaderRefused(UploadRefused):
    """A refusal about one header (the two below); the edge makes its code from the name."""

    def __init__(self, header: str, message: str) -> None:
        super().__init__(message)
        self.header = header  # as HTTP spells it: "Upload-Offset"


class HeaderMissing(HeaderRefused):
    pass


class HeaderMalformed(HeaderRefused):
    pass


class ChecksumAlgorithmUnsupported(UploadRefused):
    pass


class DeferredLengthUnsupported(UploadRefused):
    pass


class WrongContentType(UploadRefused):
    pass


class UploadTooLarge(UploadRefused):
    pass


class BeyondUploadLength(UploadRefused):
    pass


class UploadNotFound(UploadRefused):
    pass


class UploadGone(UploadRefused):
    pass


class UploadConflict(UploadRefused):
    """The upload's current state does not allow this request (the client may ask HEAD)."""


class OffsetMismatch(UploadConflict):
    pass


class UploadLocked(UploadConflict):
    pass


class LockLost(UploadConflict):
    pass


class UploadComplete(UploadConflict):
    pass


class UploadFull(UploadConflict):
    pass


class UploadIncomplete(UploadConflict):
    pass


class UploadExhausted(UploadConflict):
    pass


class ChecksumMismatch(UploadRefused):
    pass


class BodyTooShort(UploadRefused):
    pass


class BodyTooLong(UploadRefused):
    pass


class UploadInProgress(UploadRefused):
    pass
