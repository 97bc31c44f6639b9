"""Chunks: cooperative processing of one video by several nodes, a chunk at a time.

What it offers:
- ``plan``: where a video is cut (whole segments on the grid) and every encoder setting, fixed
  once by the video's owner (``make_plan``, ``Plan``, ``ChunkRange``, ``Encoder``), pure.
- ``state``: the state machine of one unit of work (a chunk, or the audio track encoded once):
  pending -> claimed(epoch, node, lease) -> committed(epoch) | failed; fenced by epoch, pure.
- ``placement``: which unit this node may claim now (the ring by the unit's own key, plus the
  idle steal), pure.

Import rule: ``storage``, ``ring``, ``node.records`` and ``node.log``/``node.config`` only;
never ``node.upload``, ``node.process``, ``node.play`` or ``node.http``, and never an HTTP
library.  ``node.process`` (the worker, the encoder) uses this package, not the other way round.
"""

from node.chunks import placement, plan, state
from node.chunks.placement import UnitDecision, claim_order, may_claim_unit, unit_key
from node.chunks.plan import ChunkRange, Encoder, Plan, PlanError, make_plan
from node.chunks.state import ChunkDoc

__all__ = ["placement", "plan", "state", "UnitDecision", "claim_order", "may_claim_unit",
           "unit_key", "ChunkRange", "Encoder", "Plan", "PlanError", "make_plan", "ChunkDoc"]
