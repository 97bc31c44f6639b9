"""Errors of the ring package.

    RingError                 base of everything ``ring`` raises
     └── InvalidMember        a member id or weight the ring cannot place (also a ValueError)

The ring is pure computation: it raises only for bad input, never for I/O.
"""

from __future__ import annotations


class RingError(Exception):
    """Base class of the ring package's errors."""


class InvalidMember(RingError, ValueError):
    """A member id is not a non-empty string, or its weight is not an int in [1, MAX_WEIGHT]."""
