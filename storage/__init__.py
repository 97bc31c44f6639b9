"""Shoal's durable state: an S3-compatible object store.

Public face:
- :class:`ObjectStore` (interface), :class:`S3Store` / :func:`open_store` (aioboto3 under
  trio-asyncio), :class:`MemoryStore` (in-memory twin for unit tests);
- :class:`GatedStore` / :class:`StorageGate`: calls refused at once while the storage probe
  says storage is unreachable, and cut short when it starts saying so (:mod:`gate`);
- the error tree :class:`StorageError` > :class:`StorageUnavailable`, :class:`NotFound`,
  :class:`PreconditionFailed`;
- :mod:`cas` documents (create with If-None-Match, update by If-Match with a re-read loop);
- :class:`StreamingUpload` (multipart with bounded memory); ``ObjectStore.part_writer`` gives a
  :class:`PartWriter` that sends one part while its bytes arrive (raw UploadPart streams on S3);
  :class:`PartFeeder` feeds bytes into such parts (bounded parts in flight, checksum in order),
  for the one-shot upload and a tus PATCH alike, with :class:`HeldBytes` for what is not in a part
  yet; S3's limits ``MIN_PART`` and ``MAX_PARTS``;
- :mod:`observe`: the seam through which a store tells how long each request took
  (``open_store(..., observe=...)``; an :data:`Observer` is ``(operation, seconds, ok)``);
- the embedded SeaweedFS server helpers;
- :mod:`http1`, the one sans-IO HTTP/1.1 head codec, and :mod:`connections` (the kept-alive
  connection pool and head reader) that every raw HTTP path of the project uses (raw S3 here,
  the node's fast lane and its hop client).
"""

from . import cas, connections, http1, observe
from .cas import CasExhausted, Keep, Versioned
from .embedded import free_port, start_embedded, wait_s3_ready, weed_command
from .gate import GatedStore, StorageGate
from .errors import NotFound, PreconditionFailed, StorageError, StorageUnavailable
from .memory import MemoryStore
from .feeder import FedPart, HeldBytes, PartFeeder
from .observe import OPERATIONS, Observer
from .multipart import StreamingUpload, part_size_for
from .parts import MAX_PARTS, MIN_PART, OnResend, PartWriter, hash_pieces, joined
from .s3 import S3Store, open_store
from .store import MultipartInfo, ObjectInfo, ObjectStore, Part

__all__ = [
    "cas", "connections", "http1", "observe", "OPERATIONS", "Observer", "CasExhausted", "Keep", "Versioned",
    "free_port", "start_embedded", "wait_s3_ready", "weed_command",
    "NotFound", "PreconditionFailed", "StorageError", "StorageUnavailable",
    "MemoryStore", "StreamingUpload", "part_size_for", "PartWriter", "OnResend", "hash_pieces", "joined",
    "PartFeeder", "FedPart", "HeldBytes", "MAX_PARTS", "MIN_PART",
    "S3Store", "open_store",
    "MultipartInfo", "ObjectInfo", "ObjectStore", "Part", "GatedStore", "StorageGate",
]
