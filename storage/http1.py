"""HTTP/1.1 for every raw path of the project: one sans-IO head codec, the kept-alive
connection pool, the loop that reads a head off a stream, and the small client over them.  Used
by the node's fast lane (server side), the hop between nodes and raw S3 requests (client side).

The codec
---------

Sans-IO: bytes in, heads out; no sockets, no trio.

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

Connections and the client
--------------------------

Kept-alive connections, shared by every raw client path (raw S3 in storage.s3, the hop between
nodes in node.play.segcache), the one loop that reads a head off a stream, and the small client
over them: the only part of this module that does I/O.

:class:`ConnectionPool` keeps idle connections per address: at most ``max_idle`` each (a
connection given back beyond that is closed), none older than ``max_age`` seconds when that is
set, and none that has bytes or an EOF waiting (the server closed it, or said something we did
not ask for).  A connection that failed, or whose answer asked to close, is never given back:
callers close it (:func:`close_quietly`).  The clock is injected.

:func:`read_head` reads from a trio stream into a :class:`HeadBuffer` until one
head is complete (bounded by :data:`MAX_HEAD`).

:class:`Http1Client` (``get``/``post``/``request(addr, method, path, headers, body) -> Answer``)
fetches a whole body whose length the answer names (``Content-Length``; a node's internal
endpoints always send one), reading it straight into one preallocated buffer.  Heads are written
and read with the one codec (above); connections come from a pool and are reused;
one that failed, timed out or was asked to close is dropped.  httpx did the node-to-node hop at
about a quarter of the speed on 770 KB segments (its per-chunk parsing and buffer copies
dominated a non-owner's CPU; docs/benchmarks.md).

Errors: :class:`ProtocolError` for a malformed or oversized head,
:class:`ConnectionClosed` when the stream ends first; OSError and trio's stream errors pass.
The client raises :class:`ClientError` for anything that is not a well-formed answer (refused,
reset, a malformed head, no Content-Length, a body that ends early, a head over 16 KiB, a body
over ``max_body``).  Timeouts are the caller's cancel scope.
"""

from __future__ import annotations

import re
import select
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

import trio


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


# ---- kept-alive connections, the head reader and the client --------------------------------------

RECV_SIZE = 64 * 1024


class ConnectionClosed(Exception):
    """The peer closed the connection before a whole head arrived."""


async def read_head(stream: trio.abc.Stream, buf: HeadBuffer, recv_size: int = RECV_SIZE) -> bytes:
    """The next head's bytes (without the blank line); what follows stays in ``buf``."""
    while (head := buf.next_head()) is None:
        data = await stream.receive_some(recv_size)
        if not data:
            raise ConnectionClosed("connection closed before the answer")
        buf.feed(data)
    return head


def _socket(stream: trio.abc.Stream) -> Any:
    return getattr(getattr(stream, "transport_stream", stream), "socket", None)


def quiet(stream: trio.abc.Stream) -> bool:
    """No bytes and no EOF waiting on an idle connection (else the server closed it)."""
    sock = _socket(stream)
    if sock is None or sock.fileno() < 0:
        return False
    readable, _, _ = select.select([sock.fileno()], [], [], 0)
    return not readable


def hang_up(stream: trio.abc.Stream) -> None:
    """Close a connection at once, without a checkpoint (an idle one: nothing to say goodbye to)."""
    sock = _socket(stream)
    if sock is not None:
        sock.close()


async def close_quietly(stream: trio.abc.Stream) -> None:
    """Close, shielded, ignoring a connection that is already broken."""
    with trio.CancelScope(shield=True):
        try:
            await trio.aclose_forcefully(stream)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass


class ConnectionPool:
    """Idle kept-alive connections per address ("host:port" or any key); see the module doc."""

    def __init__(self, *, max_idle: int, max_age: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 is_quiet: Callable[[trio.abc.Stream], bool] = quiet) -> None:
        self.max_idle = max_idle
        self.max_age = max_age
        self.clock = clock
        self._is_quiet = is_quiet
        # Invariant: at most max_idle entries per address; each (time given back, stream)
        self._idle: dict[str, list[tuple[float, trio.abc.Stream]]] = defaultdict(list)

    def idle(self, addr: str) -> list[tuple[float, trio.abc.Stream]]:
        """The idle connections of ``addr``, oldest first (the live list)."""
        return self._idle[addr]

    def take(self, addr: str) -> trio.abc.Stream | None:
        """The most recently used idle connection of ``addr`` that is still usable, or None.
        Unusable ones met on the way are closed."""
        now = self.clock()
        idle = self._idle[addr]
        while idle:
            since, stream = idle.pop()
            if (self.max_age is None or now - since < self.max_age) and self._is_quiet(stream):
                return stream
            hang_up(stream)
        return None

    async def give_back(self, addr: str, stream: trio.abc.Stream, *, reusable: bool = True) -> None:
        """Keep ``stream`` for the next request to ``addr``, or close it (not reusable, or full)."""
        idle = self._idle[addr]
        if reusable and len(idle) < self.max_idle:
            idle.append((self.clock(), stream))
        else:
            await close_quietly(stream)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                await close_quietly(idle.pop()[1])
        self._idle.clear()


class ClientError(Exception):
    """An answer could not be read (refused, reset, malformed, too large, cut short)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class Http1Client:
    """GET or POST whole, Content-Length-framed answers over kept-alive connections; see the module doc."""

    def __init__(self, *, max_idle: int = 64, max_body: int = 256 << 20) -> None:
        self._pool = ConnectionPool(max_idle=max_idle)
        self._max_body = max_body

    async def get(self, addr: str, path: str, headers: dict[str, str]) -> Answer:
        """GET ``path`` from ``addr`` ("host:port"); raises ClientError."""
        return await self.request(addr, "GET", path, headers)

    async def post(self, addr: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """POST a small ``body`` to ``addr``; raises ClientError."""
        return await self.request(addr, "POST", path, headers, body)

    async def request(self, addr: str, method: str, path: str, headers: dict[str, str],
                      body: bytes | None = None) -> Answer:
        host, _, port = addr.rpartition(":")
        fields = [("Host", addr)] + list(headers.items())
        if body is not None:
            fields.append(("Content-Length", str(len(body))))
        request = encode_request_head(method, path, fields) + (body or b"")
        stream = self._pool.take(addr)
        fresh = stream is None
        try:
            if stream is None:
                stream = await trio.open_tcp_stream(host, int(port))
            try:
                answer, reusable = await self._exchange(stream, request)
            except ClientError:
                if fresh:
                    raise
                # a kept connection the owner closed meanwhile: once more on a new one
                await close_quietly(stream)
                stream = await trio.open_tcp_stream(host, int(port))
                answer, reusable = await self._exchange(stream, request)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
            if stream is not None:
                await close_quietly(stream)
            raise ClientError(f"{type(e).__name__}: {e}") from None
        except BaseException:  # ClientError, cancellation (the caller's timeout): the connection is spent
            if stream is not None:
                await close_quietly(stream)
            raise
        await self._pool.give_back(addr, stream, reusable=reusable)
        return answer

    async def _exchange(self, stream: trio.SocketStream, request: bytes) -> tuple[Answer, bool]:
        await stream.send_all(request)
        buf = HeadBuffer()
        try:
            raw = await read_head(stream, buf, RECV_SIZE)
        except HeadTooLarge:
            raise ClientError("response head over 16 KiB") from None
        except ProtocolError as e:
            raise ClientError(str(e)) from None
        except ConnectionClosed as e:
            raise ClientError(str(e)) from None
        try:
            parsed = parse_response_head(raw)
        except ProtocolError as e:
            raise ClientError(str(e)) from None
        status, fields = parsed.status, parsed.headers
        try:
            length = content_length(fields)
        except ProtocolError:
            length = None
        if length is None:
            raise ClientError("answer without a Content-Length")
        if not 0 <= length <= self._max_body:
            raise ClientError(f"answer of {length} bytes")
        body = bytearray(length)
        view = memoryview(body)
        got = buf.take(length)
        view[:len(got)] = got
        n = len(got)
        sock = stream.socket
        while n < length:
            k = await sock.recv_into(view[n:], min(length - n, 1 << 20))
            if k == 0:
                raise ClientError(f"body ended after {n} of {length} bytes")
            n += k
        reusable = len(buf) == 0 and "close" not in fields.get("connection", "").lower()
        return Answer(status, fields, bytes(body)), reusable

    async def aclose(self) -> None:
        await self._pool.aclose()
