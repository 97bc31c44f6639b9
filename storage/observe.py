"""How long storage requests take, told to whoever asks: the observer seam of ``storage``.

``storage`` imports nothing of the node, so a process that measures (the node's
``node/metrics.py``) hands an :data:`Observer` to the store at construction
(``open_store(..., observe=...)``, ``S3Store(..., observe=...)``, ``RawS3(..., observe=...)``).
Every request then calls ``observe(operation, seconds, ok)`` exactly once, when its answer is
in or it failed (``ok`` False for any exception, cancellation included).  The default,
:func:`ignore`, does nothing.

Invariant: ``operation`` is always one of :data:`OPERATIONS`, a fixed set, so a metric labelled
by it has a bounded number of series.

What is timed:

=======================  ==========================================================================
``get``                  GetObject, the whole body read included (``get``, ``get_range``); for
                         ``iter_object`` (a download in chunks) only until the answer's head
``head`` ``delete``      HeadObject, DeleteObject
``put``                  an unconditional PutObject (raw or through aiobotocore)
``cas``                  a conditional PutObject (If-None-Match or If-Match: every record CAS)
``list``                 ListObjectsV2
``create_multipart``     CreateMultipartUpload
``upload_part``          a buffered UploadPart (the whole body sent and answered)
``upload_part_stream``   a streamed UploadPart (storage.parts): from its last byte sent to the
                         answer, so the client's pace is not in it
``complete_multipart``   CompleteMultipartUpload
``abort_multipart``      AbortMultipartUpload
``list_parts``           ListParts (one page)
``list_multipart``       ListMultipartUploads
``bucket``               HeadBucket, CreateBucket
=======================  ==========================================================================
"""

from __future__ import annotations

import time
from typing import Callable

OPERATIONS = ("get", "head", "put", "cas", "delete", "list", "create_multipart", "upload_part",
              "upload_part_stream", "complete_multipart", "abort_multipart", "list_parts",
              "list_multipart", "bucket")

Observer = Callable[[str, float, bool], None]  # (operation, seconds, ok)


def ignore(operation: str, seconds: float, ok: bool) -> None:
    """The default observer: nothing is measured."""


class timed:
    """``with timed(observe, "get"): ...`` calls ``observe("get", seconds, ok)`` once on leaving."""

    __slots__ = ("_observe", "_operation", "_t0")

    def __init__(self, observe: Observer, operation: str) -> None:
        self._observe = observe
        self._operation = operation
        self._t0 = 0.0

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        self._observe(self._operation, time.perf_counter() - self._t0, kind is None)
        return False
