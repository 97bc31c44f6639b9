"""Playback: where a committed HLS object is read from (the owner's segment cache, one hop to the
owner, or storage).

What it offers:
- ``SegmentCache``: the owner's bounded on-disk cache, single-flight storage reads, and the hop
  from a non-owner to the owner.
- ``HopClient``: the small kept-alive HTTP/1.1 client of that hop.

Import rule: ``storage``, ``ring``, ``node.records``, ``node.log``/``node.config``; never
``node.upload``, ``node.process`` or ``node.http``, and never quart.
"""

from node.play.hop import HopClient, HopError
from node.play.segcache import CacheStatistics, SegmentCache

__all__ = ["SegmentCache", "CacheStatistics", "HopClient", "HopError"]
