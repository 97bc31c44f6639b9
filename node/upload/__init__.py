"""Resumable uploads (tus 1.0.0): the protocol's rules, one PATCH in progress, the upload service.

What it offers:
- ``tus``: every rule of a resumable upload's state, pure (parsing, part plans, locks, offsets).
- ``TusUploads``: create, HEAD, PATCH, terminate and expire uploads against storage.
- ``expire_uploads``: the housekeeping pass over abandoned uploads.

Import rule: ``storage``, ``node.records``, ``node.log``/``node.config``; never ``node.process``,
``node.play`` or ``node.http``, and never an HTTP library.
"""

from node.upload import tus
from node.upload.tus import TusError
from node.upload.tus_uploads import TusUploads, expire_uploads

__all__ = ["tus", "TusError", "TusUploads", "expire_uploads"]
