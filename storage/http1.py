"""One sans-IO HTTP/1.1 head codec for every raw path: the node's fast lane (server side), the
hop between nodes and raw S3 requests (client side).  Bytes in, heads out; no sockets, no trio.

What it does, after h11's ``Connection`` (but only heads; bodies are each caller's, by
``Content-Length``):

- :class:`HeadBuffer`: bytes received are fed in; :meth:`HeadBuffer.next_head` takes one
  complete head off the front (framed as h11 frames it: the head ends at the first empty line,
  ``\\n\\n`` or ``\\n\\r\\n``, so a bare LF ends lines as it does for h11 and hypercorn) and
  leaves what follows in the buffer.
- :func:`parse_request_head` / :func:`parse_response_head`: a head (without its blank line) as a
  :class:`RequestHead` or a :class:`ResponseHead`.
- :func:`encode_request_head` / :func:`encode_response_head`: the other way.
- :func:`content_length`: the body length a head names, validated.

Limits (``Invariant``: every parse is bounded): a head is at most :data:`MAX_HEAD` bytes (16 KiB)
and :data:`MAX_FIELDS` fields; a ``Content-Length`` is 1-18 digits (repeated only with the same
value, RFC 9112 6.3).  Strict parsing refuses (:class:`ProtocolError`) a line ended by a bare
LF, an obsolete line fold (a field line starting with space or tab), whitespace before a
field's colon, a field without a colon, and a malformed start line.  Responses from our own
storage endpoint are parsed as strictly, except that whitespace around a field name is
tolerated (as the raw S3 path always did).

Errors: :class:`ProtocolError` (a malformed head) and its subclass :class:`HeadTooLarge`.
Callers translate them into their own (``StorageUnavailable``, ``HopError``, a hand-over to
hypercorn).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HEAD = 16 * 1024
MAX_FIELDS = 100
MAX_LENGTH_DIGITS = 18  # 10**18 bytes: larger than any object; int() stays cheap

_HEAD_END = re.compile(rb"\n\r?\n")  # h11's own rule for the end of a head
_BARE_LF = re.compile(rb"(?<!\r)\n")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(r"[0-9]{1,%d}" % MAX_LENGTH_DIGITS)

REASONS = {200: "OK", 204: "No Content", 206: "Partial Content", 304: "Not Modified",
           400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           416: "Range Not Satisfiable", 503: "Service Unavailable"}


class ProtocolError(ValueError):
    """A head that is not well-formed HTTP/1.1 (or over a limit)."""


class HeadTooLarge(ProtocolError):
    """No end of head within MAX_HEAD bytes."""


@dataclass(frozen=True)
class RequestHead:
    """One parsed request head."""

    method: str
    target: str
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "
    version: str = "HTTP/1.1"

    @property
    def keep_alive(self) -> bool:
        return "close" not in self.headers.get("connection", "").lower()


@dataclass(frozen=True)
class ResponseHead:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated field keeps its last value

    @property
    def keep_alive(self) -> bool:
        return "close" not in self.headers.get("connection", "").lower()


# ---- framing ----------------------------------------------------------------------------------------

def head_end(buf: bytes | bytearray, start: int = 0) -> tuple[int, int] | None:
    """``(end of the head, start of what follows)`` in ``buf``, or None while incomplete.
    Raises HeadTooLarge when ``MAX_HEAD`` bytes hold no end.  ``start``: where to resume looking."""
    m = _HEAD_END.search(buf, max(0, start - 2))
    if m is None:
        if len(buf) > MAX_HEAD:
            raise HeadTooLarge(f"head over {MAX_HEAD // 1024} KiB")
        return None
    end = m.start()
    if end > 0 and buf[end - 1:end] == b"\r":
        end -= 1
    if end > MAX_HEAD:
        raise HeadTooLarge(f"head over {MAX_HEAD // 1024} KiB")
    return end, m.end()


def has_bare_lf(head: bytes) -> bool:
    """True when a line of ``head`` ends with LF alone (h11 accepts that; strict parsing does not)."""
    return _BARE_LF.search(head) is not None


@dataclass(frozen=True)
class Framed:
    head: bytes  # without the blank line
    size: int  # bytes of head and blank line
    crlf: bool  # every line, the blank one too, ends with CRLF (else h11 and strict parsers differ)


class HeadBuffer:
    """Received bytes, and the heads framed in them.  Sans-IO: the caller reads the socket.

    ``feed(data)``; ``next_head()`` returns one head's bytes (without the blank line) and drops
    them from the buffer, or None while the head is incomplete (raises HeadTooLarge);
    ``data`` is what is buffered beyond the heads taken (the start of a body, or of the next
    request); ``take(n)`` removes up to ``n`` bytes of it.
    """

    def __init__(self, data: bytes = b"") -> None:
        self._buf = bytearray(data)
        self._searched = 0  # bytes already searched without finding an end

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def data(self) -> bytes:
        return bytes(self._buf)

    def __len__(self) -> int:
        return len(self._buf)

    def next_head(self) -> bytes | None:
        found = head_end(self._buf, self._searched)
        if found is None:
            self._searched = len(self._buf)
            return None
        end, rest = found
        head = bytes(self._buf[:end])
        del self._buf[:rest]
        self._searched = 0
        return head

    def peek_head(self) -> Framed | None:
        """The first head, left in the buffer (``take(framed.size)`` drops it), or None while
        incomplete.  Raises HeadTooLarge."""
        found = head_end(self._buf, self._searched)
        if found is None:
            self._searched = len(self._buf)
            return None
        end, size = found
        return Framed(bytes(self._buf[:end]), size, not has_bare_lf(bytes(self._buf[:size])))

    def take(self, n: int) -> bytes:
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self._searched = 0
        return out


# ---- parsing ----------------------------------------------------------------------------------------

def _fields(lines: list[str], *, strict_names: bool) -> dict[str, str]:
    if len(lines) > MAX_FIELDS:
        raise ProtocolError(f"more than {MAX_FIELDS} header fields")
    fields: dict[str, str] = {}
    for line in lines:
        if line[:1] in (" ", "\t"):
            raise ProtocolError("obsolete line folding")
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"malformed header line {line[:80]!r}")
        if not strict_names:
            name = name.strip()
        if not _TOKEN.fullmatch(name):
            raise ProtocolError(f"malformed header name {name[:80]!r}")
        fields[name.lower()] = value.strip(" \t")
    return fields


def _lines(raw: bytes) -> list[str]:
    if has_bare_lf(raw) or b"\r" in raw.replace(b"\r\n", b""):
        raise ProtocolError("a line not ended by CRLF")
    return raw.decode("latin-1").split("\r\n")


def parse_request_head(raw: bytes) -> RequestHead:
    """A request head without its blank line.  Repeated fields are joined with ", " (RFC 9110
    5.3).  Raises ProtocolError."""
    if len(raw) > MAX_HEAD:
        raise HeadTooLarge(f"head over {MAX_HEAD // 1024} KiB")
    lines = _lines(raw)
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1] or not parts[2].startswith("HTTP/"):
        raise ProtocolError(f"malformed request line {lines[0][:80]!r}")
    if len(lines) - 1 > MAX_FIELDS:
        raise ProtocolError(f"more than {MAX_FIELDS} header fields")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        one = _fields([line], strict_names=True)
        (name, value), = one.items()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    content_length(headers)  # validated here, so a caller never meets a bad one
    return RequestHead(parts[0], parts[1], headers, parts[2])


def parse_response_head(raw: bytes) -> ResponseHead:
    """A response head without its blank line.  Raises ProtocolError."""
    if len(raw) > MAX_HEAD:
        raise HeadTooLarge(f"head over {MAX_HEAD // 1024} KiB")
    lines = _lines(raw)
    first = lines[0].split(" ", 2)
    if len(first) < 2 or not first[0].startswith("HTTP/1.") or not (first[1].isdigit() and len(first[1]) == 3):
        raise ProtocolError(f"malformed status line {lines[0][:80]!r}")
    return ResponseHead(int(first[1]), _fields(lines[1:], strict_names=False))


def content_length(headers: dict[str, str]) -> int | None:
    """The ``Content-Length`` of lower-cased ``headers`` (repeated values joined by ", " must be
    equal), or None when absent.  Raises ProtocolError for anything but 1-18 digits."""
    raw = headers.get("content-length")
    if raw is None:
        return None
    values = {v.strip() for v in raw.split(",")}
    if len(values) != 1:
        raise ProtocolError("conflicting Content-Length values")
    value = values.pop()
    if not _DIGITS.fullmatch(value):
        raise ProtocolError(f"malformed Content-Length {value[:40]!r}")
    return int(value)


# ---- encoding ---------------------------------------------------------------------------------------

def _check(text: str) -> str:
    if "\r" in text or "\n" in text:
        raise ValueError(f"a line break in a head: {text[:80]!r}")
    return text


def encode_request_head(method: str, target: str, headers: list[tuple[str, str]] | dict[str, str]) -> bytes:
    items = headers.items() if isinstance(headers, dict) else headers
    lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in items]
    return ("\r\n".join(_check(line) for line in lines) + "\r\n\r\n").encode("latin-1")


def encode_response_head(status: int, headers: list[tuple[str, str]], *, keep_alive: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}"] + [f"{k}: {v}" for k, v in headers]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(_check(line) for line in lines) + "\r\n\r\n").encode("latin-1")
