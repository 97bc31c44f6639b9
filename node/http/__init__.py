"""The HTTP edge: the quart-trio app, its routes per area, request-body backpressure, errors,
CORS, ranges, and the fast lane (cache hits answered with sendfile ahead of hypercorn).

What it offers: ``create_app(ctx)`` and ``FastLane``.

Import rule: the only package of the node that imports quart, hypercorn or werkzeug and knows HTTP
statuses; it may import every other part of the node.  Nothing imports it but the node's wiring.
"""

from node.http.app import create_app
from node.http.fastlane import FastLane

__all__ = ["create_app", "FastLane"]
