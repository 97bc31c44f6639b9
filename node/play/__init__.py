"""Playback: which committed HLS object may be answered and how (the ready-record memo, the answer
plan), and where it is read from (the owner's segment cache, one hop to the owner, or storage).

What it offers:
- ``ReadyRecords``, ``ready_record``, ``internal_object_key`` and the errors ``PlayError`` >
  ``VideoNotFound``, ``NotReady``, ``ObjectNotFound`` (node.http maps them to statuses);
- ``Plan`` / ``object_plan``: one object's answer (ETag, Range, HEAD) for both HTTP paths, with
  ``media_headers`` (type and caching of a playlist, a segment, the poster) and ``count_served``;
- ``SegmentCache``: the owner's bounded on-disk cache, single-flight storage reads, the hop from
  a non-owner to the owner (storage.http1's kept-alive client), and the eviction of a
  deleted video on every node; ``Peers``, the cluster it follows (ring, alive addresses).

Import rule: ``storage``, ``ring``, ``node.records``, ``node.log``/``node.config`` and the pure
``node.peer_auth``; never ``node.upload``, ``node.process`` or ``node.http``, and never quart.
"""

from node.play.answers import (NotReady, ObjectNotFound, Plan, PlayError, ReadyRecords, VideoNotFound,
                               count_served, has_output, internal_object_key, media_headers, object_plan,
                               ready_record)
from node.play.segcache import CacheStatistics, Peers, SegmentCache

__all__ = ["SegmentCache", "CacheStatistics", "Peers",
           "ReadyRecords", "ready_record", "internal_object_key", "Plan", "object_plan",
           "media_headers", "count_served", "has_output",
           "PlayError", "VideoNotFound", "NotReady", "ObjectNotFound"]
