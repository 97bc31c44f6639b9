"""HTTP Range parsing (RFC 9110 section 14), pure.

Single ranges only: ``bytes=a-b``, ``bytes=a-`` and suffix ``bytes=-n``.  A
request for several ranges is answered with the whole body (200), which RFC
9110 allows ("a server MAY ignore the Range header field").

Numbers of any length are read (a 5,000-digit one too, which ``int()`` refuses
past 4,300 digits): a number over :data:`MAX_DIGITS` digits is larger than any
object, so as a first byte it makes the range unsatisfiable (416 with
``Content-Range: bytes */<size>``), as a last byte it means "to the end", and as
a suffix length it means "the whole object".  Both playback paths (the fast
lane and hypercorn) answer from this one function, so they answer alike.
"""

from __future__ import annotations

import re

MAX_DIGITS = 18  # 10**18 bytes: more than any object
_SINGLE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


class Unsatisfiable(Exception):
    """416: the range lies outside the representation."""


def _number(digits: str) -> int:
    """The value of a run of ASCII digits; one too long to matter is "larger than any object"."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= MAX_DIGITS else 10 ** MAX_DIGITS


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive, or None for "send the whole body".  Raises Unsatisfiable."""
    if not header:
        return None
    header = header.strip()
    if "," in header:
        return None  # multiple ranges: whole body
    m = _SINGLE.fullmatch(header.replace(" ", ""))
    if not m:
        return None  # not a bytes range we understand: ignore it, as RFC 9110 allows
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        n = _number(last)
        if n == 0 or size == 0:
            raise Unsatisfiable()
        return max(0, size - n), size - 1
    start = _number(first)
    if start >= size:
        raise Unsatisfiable()
    end = size - 1 if last == "" else min(_number(last), size - 1)
    if end < start:
        return None  # invalid: ignore
    return start, end
