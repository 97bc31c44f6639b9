"""Video records: the bucket's layout, the lifecycle rules, and the one way records change.

What it offers:
- ``layout``: where every object of a video lives in the bucket (keys, ids, the pending index).
- ``lifecycle``: the record's state machine, pure (``(record, now, ...) -> record`` or Refused).
- ``VideoStore``: create, read, list and change records by compare-and-swap (one ``video_state``
  log line per change), delete and purge a video's objects.
- ``outbox``: the webhook outbox entries VideoStore writes around each event's transition
  (event ids, the entry, whether its transition committed); delivery is ``node.webhooks``'s.

Import rule: ``storage`` and ``node.log``/``node.config`` only; never ``node.upload``,
``node.process``, ``node.play`` or ``node.http``, and never an HTTP library.
"""

from node.records import layout, lifecycle
from node.records.lifecycle import Record, Refused
from node.records.store import VideoStore

__all__ = ["layout", "lifecycle", "Record", "Refused", "VideoStore"]
