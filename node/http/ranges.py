"""HTTP Range parsing (RFC 9110 section 14), pure.

Single ranges only: ``bytes=a-b``, ``bytes=a-`` and suffix ``bytes=-n``.  A
request for several ranges is answered with the whole body (200), which RFC
9110 allows ("a server MAY ignore the Range header field").
"""

from __future__ import annotations

import re

_SINGLE = re.compile(r"^bytes=(\d*)-(\d*)$")


class Unsatisfiable(Exception):
    """416: the range lies outside the representation."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive, or None for "send the whole body".  Raises Unsatisfiable."""
    if not header:
        return None
    header = header.strip()
    if "," in header:
        return None  # multiple ranges: whole body
    m = _SINGLE.match(header.replace(" ", ""))
    if not m:
        return None  # not a bytes range we understand: ignore it, as RFC 9110 allows
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        n = int(last)
        if n == 0 or size == 0:
            raise Unsatisfiable()
        return max(0, size - n), size - 1
    start = int(first)
    if start >= size:
        raise Unsatisfiable()
    end = size - 1 if last == "" else min(int(last), size - 1)
    if end < start:
        return None  # invalid: ignore
    return start, end
