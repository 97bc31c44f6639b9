"""storage.http1, the one HTTP/1.1 head codec: tables, no sockets.  And storage.http1'
pool with an injected clock and fake streams."""

from __future__ import annotations

import pytest
import trio

from storage import http1
from storage.http1 import ConnectionPool
from storage.http1 import HeadBuffer, HeadTooLarge, ProtocolError, RequestHead, ResponseHead


# ---- framing: where a head ends, as h11 frames it ------------------------------------------------------

@pytest.mark.parametrize("data,head,rest,crlf", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY", b"GET / HTTP/1.1\r\nHost: x", b"BODY", True),
    (b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1", b"", True),
    # a bare LF ends lines and heads for h11: two requests, and the framing says it was not CRLF
    (b"GET /a HTTP/1.1\r\nHost: x\n\nGET /b HTTP/1.1\r\n\r\n", b"GET /a HTTP/1.1\r\nHost: x",
     b"GET /b HTTP/1.1\r\n\r\n", False),
    (b"GET /a HTTP/1.1\nHost: x\r\n\r\n", b"GET /a HTTP/1.1\nHost: x", b"", False),
    (b"GET /a HTTP/1.1\r\nHost: x\n\r\nZ", b"GET /a HTTP/1.1\r\nHost: x", b"Z", False),
])
def test_framing(data, head, rest, crlf):
    buf = HeadBuffer()
    for i in range(0, len(data), 3):  # fed in small pieces: ends that straddle a feed are found
        buf.feed(data[i:i + 3])
    framed = buf.peek_head()
    assert (framed.head, framed.crlf) == (head, crlf)
    buf.take(framed.size)
    assert buf.data == rest


def test_next_head_takes_one_head_and_leaves_the_rest():
    buf = HeadBuffer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 204 No")
    assert buf.next_head() == b"HTTP/1.1 200 OK\r\nContent-Length: 2"
    assert buf.take(2) == b"hi" and buf.next_head() is None and len(buf) == len(b"HTTP/1.1 204 No")


def test_an_incomplete_head_waits_and_an_endless_one_is_too_large():
    buf = HeadBuffer(b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert buf.peek_head() is None
    buf.feed(b"X-Pad: " + b"a" * http1.MAX_HEAD)
    with pytest.raises(HeadTooLarge):
        buf.peek_head()
    with pytest.raises(HeadTooLarge):  # an end found beyond the limit is still too large
        http1.head_end(b"a" * (http1.MAX_HEAD + 1) + b"\r\n\r\n")


# ---- requests ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,expect", [
    (b"GET /a HTTP/1.1\r\nHost: x", RequestHead("GET", "/a", {"host": "x"})),
    (b"HEAD /a HTTP/1.1\r\nRange: bytes=0-1\r\nRANGE: bytes=4-5",
     RequestHead("HEAD", "/a", {"range": "bytes=0-1, bytes=4-5"})),
    (b"GET /a HTTP/1.0\r\nHost: x", RequestHead("GET", "/a", {"host": "x"}, "HTTP/1.0")),
    (b"POST /a HTTP/1.1\r\nContent-Length: 5", RequestHead("POST", "/a", {"content-length": "5"})),
    (b"GET /a HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 7",
     RequestHead("GET", "/a", {"content-length": "7, 7"})),  # repeated with one value: allowed
    (b"GET /a HTTP/1.1\r\nX:  \t v \t", RequestHead("GET", "/a", {"x": "v"})),
])
def test_parse_request_head(raw, expect):
    assert http1.parse_request_head(raw) == expect


@pytest.mark.parametrize("raw,why", [
    (b"GET /a HTTP/1.1\r\nHost: x\r\n folded", "folding"),
    (b"GET /a HTTP/1.1\r\nHost: x\r\n\tfolded", "folding"),
    (b"GET /a HTTP/1.1\r\nHost x", "malformed header line"),
    (b"GET /a HTTP/1.1\r\nHost : x", "malformed header name"),
    (b"GET /a HTTP/1.1\r\n: x", "malformed header name"),
    (b"GET /a HTTP/1.1\nHost: x", "CRLF"),  # a bare LF
    (b"GET /a HTTP/1.1\r\nHost: x\ry", "CRLF"),  # a bare CR
    (b"GET  /a HTTP/1.1", "request line"),
    (b"GET /a", "request line"),
    (b"G(T /a HTTP/1.1", "request line"),
    (b"GET /a FTP/1.1", "request line"),
    (b"GET /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2", "conflicting"),
    (b"GET /a HTTP/1.1\r\nContent-Length: -1", "Content-Length"),
    (b"GET /a HTTP/1.1\r\nContent-Length: 0x10", "Content-Length"),
    (b"GET /a HTTP/1.1\r\nContent-Length: " + b"9" * 5000, "Content-Length"),
    (b"GET /a HTTP/1.1\r\n" + b"X: y\r\n" * http1.MAX_FIELDS + b"Z: z", "header fields"),
    (b"GET /" + b"a" * http1.MAX_HEAD + b" HTTP/1.1", "KiB"),
])
def test_malformed_request_heads_are_refused(raw, why):
    with pytest.raises(ProtocolError, match=why):
        http1.parse_request_head(raw)


def test_keep_alive_follows_connection_close():
    assert http1.parse_request_head(b"GET /a HTTP/1.1\r\nHost: x").keep_alive
    assert not http1.parse_request_head(b"GET /a HTTP/1.1\r\nConnection: Close").keep_alive
    assert not http1.parse_response_head(b"HTTP/1.1 200 OK\r\nConnection: close").keep_alive


# ---- responses -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,expect", [
    (b"HTTP/1.1 200 OK\r\nETag: x\r\nContent-Length: 3", ResponseHead(200, {"etag": "x", "content-length": "3"})),
    (b"HTTP/1.1 204", ResponseHead(204, {})),
    (b"HTTP/1.0 503 Slow Down Please", ResponseHead(503, {})),
    (b"HTTP/1.1 200 OK\r\nX-Amz-Id : 1", ResponseHead(200, {"x-amz-id": "1"})),  # tolerated from storage
])
def test_parse_response_head(raw, expect):
    assert http1.parse_response_head(raw) == expect


@pytest.mark.parametrize("raw", [b"HTTP/2 200", b"FTP 200 OK", b"HTTP/1.1 abc", b"HTTP/1.1 2000 OK",
                                 b"HTTP/1.1 200 OK\r\nno colon", b"HTTP/1.1 200 OK\nA: b",
                                 b"HTTP/1.1 200 OK\r\n folded: x", b"garbage"])
def test_malformed_response_heads_are_refused(raw):
    with pytest.raises(ProtocolError):
        http1.parse_response_head(raw)


@pytest.mark.parametrize("headers,expect", [
    ({}, None), ({"content-length": "0"}, 0), ({"content-length": "123"}, 123),
    ({"content-length": "5, 5"}, 5), ({"content-length": "9" * 18}, 10 ** 18 - 1),
])
def test_content_length(headers, expect):
    assert http1.content_length(headers) == expect


@pytest.mark.parametrize("value", ["", "1 2", "+1", "1.0", "9" * 19, "1, 2", "٣"])
def test_content_length_refused(value):
    with pytest.raises(ProtocolError):
        http1.content_length({"content-length": value})


# ---- encoding ------------------------------------------------------------------------------------------

def test_encode_heads_round_trip():
    raw = http1.encode_request_head("GET", "/x?a=1", [("Host", "h:1"), ("X-Shoal-Hop", "1.ab")])
    assert raw == b"GET /x?a=1 HTTP/1.1\r\nHost: h:1\r\nX-Shoal-Hop: 1.ab\r\n\r\n"
    assert http1.parse_request_head(raw[:-4]) == RequestHead("GET", "/x?a=1", {"host": "h:1", "x-shoal-hop": "1.ab"})
    resp = http1.encode_response_head(206, [("Content-Length", "3")], keep_alive=False)
    assert resp == b"HTTP/1.1 206 Partial Content\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
    assert http1.parse_response_head(resp[:-4]) == ResponseHead(206, {"content-length": "3", "connection": "close"})


def test_encoding_refuses_a_line_break_in_a_field():
    with pytest.raises(ValueError):
        http1.encode_request_head("GET", "/x", {"X": "a\r\nInjected: 1"})
    with pytest.raises(ValueError):
        http1.encode_response_head(200, [("X", "a\nb")])


# ---- the pool (injected clock, fake streams) -------------------------------------------------------------

class FakeStream(trio.abc.Stream):
    def __init__(self) -> None:
        self.closed = False

    async def send_all(self, data):  # pragma: no cover - not used
        pass

    async def wait_send_all_might_not_block(self):  # pragma: no cover
        pass

    async def send_eof(self):  # pragma: no cover
        pass

    async def receive_some(self, max_bytes=None):  # pragma: no cover
        return b""

    async def aclose(self):
        self.closed = True


async def test_pool_bounds_idle_connections_per_address_and_drops_old_or_noisy_ones():
    now = [0.0]
    noisy: set[int] = set()
    pool = ConnectionPool(max_idle=2, max_age=15.0, clock=lambda: now[0],
                          is_quiet=lambda s: id(s) not in noisy)
    a, b, c, d = FakeStream(), FakeStream(), FakeStream(), FakeStream()
    await pool.give_back("h:1", a)
    await pool.give_back("h:1", b)
    await pool.give_back("h:1", c)  # over max_idle: closed
    await pool.give_back("h:2", d, reusable=False)  # an answer that asked to close: closed
    assert c.closed and d.closed and [s for _, s in pool.idle("h:1")] == [a, b]
    assert pool.take("h:2") is None
    noisy.add(id(b))  # the server closed b meanwhile
    assert pool.take("h:1") is a  # b (the most recent) was not quiet: dropped on the way
    assert pool.idle("h:1") == []
    await pool.give_back("h:1", a)
    now[0] = 15.0  # too old
    assert pool.take("h:1") is None
    e = FakeStream()
    await pool.give_back("h:3", e)
    await pool.aclose()
    assert e.closed and pool.idle("h:3") == []
