"""The storage exception tree.  Everything below the store raises only these.

    StorageError                 anything storage said no to that is not below
    ├── StorageUnavailable       cannot reach storage, timeouts, 5xx, throttling: retry later
    ├── NotFound                 no such key / multipart upload
    └── PreconditionFailed       a conditional write lost (412, or S3's 409 ConditionalRequestConflict):
                                 re-read and decide again

botocore, aiohttp and OSError failures are translated in one place,
:func:`storage.s3._translate`.  ``trio.Cancelled`` is never caught.
"""


class StorageError(Exception):
    """Storage refused or failed an operation."""


class StorageUnavailable(StorageError):
    """Storage cannot be reached or is overloaded; the operation may be retried."""


class NotFound(StorageError):
    """The key (or multipart upload) does not exist."""


class PreconditionFailed(StorageError):
    """A conditional write (If-None-Match / If-Match) lost against another writer."""
