"""Webhooks: video events delivered at least once, signed, from the outbox in storage.

What it offers:
- ``message``: the JSON body of an event and its ``X-Shoal-Signature`` (HMAC-SHA256, Stripe's
  ``t=<unix>,v1=<hex>`` over ``t.body``): ``body_of``, ``sign``, ``verify``; pure.
- ``policy``: what to do with one outbox entry now (wait, deliver, drop), the retry delay and the
  entry after a round of POSTs (done, retry, dead); pure, time passed in.
- ``Deliverer``: the node's service that scans ``webhooks/outbox/``, delivers the entries whose
  video this node owns on the ring (so a dead node's entries go to the next owner), and removes
  them by CAS; bounded scan, concurrency and attempts.

The entries are written by ``node.records`` (node/records/outbox.py) with the transition itself.
Import rule: ``storage``, ``node.log``, ``node.config``, ``node.records`` and itself; httpx for
the POSTs; never ``node.http``, ``node.process``, ``node.upload`` or ``node.play``.  Ownership
comes in as a callable from whoever composes the node (node/compose.py).
"""

from node.webhooks.deliverer import Deliverer, DelivererStatistics
from node.webhooks.message import SIGNATURE_HEADER, body_of, sign, verify

__all__ = ["Deliverer", "DelivererStatistics", "SIGNATURE_HEADER", "body_of", "sign", "verify"]
