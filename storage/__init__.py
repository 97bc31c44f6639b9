"""Shoal's durable state: an S3-compatible object store.

Public face, by module:
- :mod:`store`: the interface (:class:`ObjectStore`), the :class:`PartWriter` every store hands
  out (``ObjectStore.part_writer``: one part sent while its bytes arrive) and S3's limits
  ``MIN_PART`` and ``MAX_PARTS``; the timing seam (an :data:`Observer` is ``(operation, seconds,
  ok)``, given as ``open_store(..., observe=...)``); :class:`GatedStore` / :class:`StorageGate`:
  calls refused at once while the storage probe says storage is unreachable, and cut short when
  it starts saying so;
- :mod:`s3`: :class:`S3Store` / :func:`open_store` (aioboto3 under trio-asyncio, with raw SigV4
  requests for the streamed UploadPart and small PutObjects);
- :mod:`memory`: :class:`MemoryStore`, the in-memory twin for unit tests;
- :mod:`cas`: JSON documents changed only by compare-and-swap (create with If-None-Match, update
  by If-Match with a re-read loop);
- :mod:`multipart`: :class:`StreamingUpload` (multipart with bounded memory) and the
  :class:`PartFeeder` that feeds bytes into parts (bounded parts in flight, checksum in order),
  for the one-shot upload and a tus PATCH alike, with :class:`HeldBytes` for what is not in a
  part yet;
- :mod:`http1`: the one sans-IO HTTP/1.1 head codec, the kept-alive connection pool and the
  small client that every raw HTTP path of the project uses (raw S3 here, the node's fast lane
  and its hop client);
- :mod:`errors`: :class:`StorageError` > :class:`StorageUnavailable`, :class:`NotFound`,
  :class:`PreconditionFailed`;
- :mod:`embedded`: the embedded SeaweedFS server helpers.

Import rule: nothing of ``node``, ``ring`` or ``membership``.
"""

from . import cas, http1
from .cas import CasExhausted, Keep, Versioned
from .embedded import free_port, start_embedded, wait_s3_ready, weed_command
from .errors import NotFound, PreconditionFailed, StorageError, StorageUnavailable
from .memory import MemoryStore
from .multipart import FedPart, HeldBytes, PartFeeder, StreamingUpload, part_size_for
from .s3 import S3Store, open_store
from .store import (MAX_PARTS, MIN_PART, OPERATIONS, GatedStore, MultipartInfo, ObjectInfo, ObjectStore,
                    Observer, OnResend, Part, PartWriter, StorageGate, hash_pieces, joined)

__all__ = [
    "cas", "http1", "OPERATIONS", "Observer", "CasExhausted", "Keep", "Versioned",
    "free_port", "start_embedded", "wait_s3_ready", "weed_command",
    "NotFound", "PreconditionFailed", "StorageError", "StorageUnavailable",
    "MemoryStore", "StreamingUpload", "part_size_for", "PartWriter", "OnResend", "hash_pieces", "joined",
    "PartFeeder", "FedPart", "HeldBytes", "MAX_PARTS", "MIN_PART",
    "S3Store", "open_store",
    "MultipartInfo", "ObjectInfo", "ObjectStore", "Part", "GatedStore", "StorageGate",
]
