"""Getting a video's bytes in: the one-shot upload and resumable uploads (tus 1.0.0).

What it offers:
- ``ingest`` (and its ``IngestResult``): the one-shot upload, a request body streamed into a new
  video's source and its record created; ``OwnerNotifier``: the owner of a video whose upload
  landed here is told at once (``node.upload.landing``).
- ``tus``: every rule of a resumable upload's state, pure (parsing, part plans, locks, offsets).
- ``TusUploads``: create, HEAD, PATCH, terminate, finish and expire resumable uploads against
  storage; the node makes one at start (``TusUploads(videos, node_id, part_size=..., lock_ttl=...,
  expiry=..., parts_in_flight=..., alive=..., on_uploaded=...)``) and calls its ``housekeep``.
- ``errors``: why an upload request is refused (``UploadRefused`` and its tree); no HTTP status
  here: ``node.http`` maps them.

Import rule: ``storage``, ``node.records``, ``node.log``/``node.config``, ``node.peer_auth``; never
``node.process``, ``node.play`` or ``node.http``.  No server-side HTTP (quart, werkzeug,
hypercorn) and no HTTP status raised here; the owner's wake is one httpx POST to another node
(a client, as node.play's hop is).
"""

from node.upload import errors, tus
from node.upload.errors import UploadRefused
from node.upload.landing import IngestResult, OwnerNotifier, ingest
from node.upload.tus_uploads import TusUploads

__all__ = ["errors", "tus", "UploadRefused", "ingest", "IngestResult", "OwnerNotifier", "TusUploads"]
