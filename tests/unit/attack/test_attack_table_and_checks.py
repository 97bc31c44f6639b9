"""The attack suite's pure parts: reading raw answers, the error shape, leak detection, hop
signatures, the verdict rules, and the table itself (every case documented in docs/security.md)."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from attack import run, target
from attack.cases import CASES, Case, Expect, Scenario, markdown_table
from attack.checks import Answer, Stream, error_shape, hop_header, leaks, split_responses
from attack import wire
from membership import codec, frames
from membership.messages import PING, Message
from membership.replay import ReplayGuard

ROOT = Path(__file__).resolve().parents[3]
ERR = b'{"error":{"code":"not_found","message":"no such video"}}'


def _resp(status: int, body: bytes, *extra: str) -> bytes:
    head = f"HTTP/1.1 {status} \r\ncontent-length: {len(body)}\r\n" + "".join(e + "\r\n" for e in extra)
    return head.encode() + b"\r\n" + body


# ---- reading answers -------------------------------------------------------------------------------

def test_two_pipelined_answers_are_two():
    answers, rest = split_responses(_resp(401, ERR) + _resp(200, b'{"ok":true}'))
    assert [a.status for a in answers] == [401, 200] and rest == b""
    assert answers[0].body == ERR


def test_an_incomplete_answer_is_left_over():
    data = _resp(200, b"hello")[:-2]
    answers, rest = split_responses(data)
    assert answers == [] and rest == data


def test_chunked_answers_are_read_to_their_end():
    data = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + _resp(404, ERR)
    answers, _ = split_responses(data)
    assert [(a.status, a.body) for a in answers] == [(200, b"hello"), (404, ERR)]


def test_answers_to_head_have_no_body():
    answers, rest = split_responses(b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n", head_request=True)
    assert answers[0].body == b"" and rest == b""


# ---- the error shape and leaks ---------------------------------------------------------------------

@pytest.mark.parametrize("body, shape", [
    (ERR, ("not_found", "no such video")),
    (b'{"error": {"code": "Not Found", "message": "x"}}', None),  # not snake_case
    (b'{"error": "not_found"}', None),
    (b"<html>400 Bad Request</html>", None),
    (b"", None),
])
def test_error_shape(body, shape):
    assert error_shape(body) == shape


@pytest.mark.parametrize("text, found", [
    ('{"error":{"code":"undecodable","message":"not a video file we can read"}}', False),
    ("Traceback (most recent call last):\n  File \"/x/y.py\", line 3, in f", True),
    ("input cannot be decoded: /tmp/pytest-of-root/x/source: Invalid data", True),
    ("could not open /root/.shoal/secrets.json", True),
    ("ValueError: Exceeds the limit (4300 digits)", True),
    ("botocore ClientError", True),
    ('{"hls":"/v1/videos/abc/hls/master.m3u8"}', False),  # our own URL paths are not local paths
])
def test_leaks(text, found):
    assert bool(leaks(text)) is found


def test_a_named_local_path_is_a_leak():
    assert leaks(b"state in /srv/shoal/state", local_paths=("/srv/shoal/state",))


def test_hop_header_is_ts_dot_hex_hmac_of_ts_method_path():
    # the vector: HMAC-SHA256(b"k", b"1700000000\nGET\n/v1/internal/objects/x")
    assert hop_header(b"k", 1700000000, "GET", "/v1/internal/objects/x") == (
        "1700000000.c80a3f9e01f497b2cebe665883dd768c5dc14067f37bfe2388ddca99941a1947")
    value = hop_header(b"k", 1700000000, "GET", "/v1/internal/objects/x")
    assert re.fullmatch(r"1700000000\.[0-9a-f]{64}", value)
    assert value != hop_header(b"k", 1700000000, "GET", "/v1/internal/objects/y")
    assert value != hop_header(b"other", 1700000000, "GET", "/v1/internal/objects/x")


# ---- verdicts -----------------------------------------------------------------------------------------

def _stream(*answers: Answer, closed: bool = False) -> Stream:
    return Stream(list(answers), closed)


def test_a_second_answer_on_one_connection_fails_the_case():
    two = _stream(Answer(401, {}, ERR), Answer(200, {}, b'{"ok":true}'))
    with pytest.raises(AssertionError, match="2 answers"):
        target.check_stream(two, Expect((400, 401), drop_ok=True), "cl_te")


def test_a_drop_passes_only_where_dropping_is_right():
    target.check_stream(_stream(closed=True), Expect((400,), drop_ok=True), "garbage")
    with pytest.raises(AssertionError, match="dropped"):
        target.check_stream(_stream(closed=True), Expect((404,)), "path")


def test_a_bodiless_refusal_then_close_counts_as_a_drop():
    bare = Answer(400, {"content-length": "0"}, b"")
    target.check_stream(_stream(bare, closed=True), Expect((400,), drop_ok=True), "garbage")
    with pytest.raises(AssertionError, match="error shape"):
        target.check_stream(_stream(bare, closed=False), Expect((400,), drop_ok=True), "garbage")
    with pytest.raises(AssertionError, match="error shape"):
        target.check_stream(_stream(bare, closed=True), Expect((400,)), "parseable request")


def test_a_hang_fails_the_case():
    with pytest.raises(AssertionError, match="hangs"):
        target.check_stream(_stream(), Expect((400,), drop_ok=True), "tls")


def test_status_code_and_headers_are_checked():
    target.check_answer(Answer(404, {}, ERR), Expect((404,), ("not_found",)), "ok")
    with pytest.raises(AssertionError, match="status 500"):
        target.check_answer(Answer(500, {}, ERR), Expect((404,)), "crash")
    with pytest.raises(AssertionError, match="code"):
        target.check_answer(Answer(404, {}, ERR), Expect((404,), ("bad_range",)), "code")
    with pytest.raises(AssertionError, match="set-cookie"):
        target.check_answer(Answer(404, {"set-cookie": "x=1"}, ERR), Expect((404,), forbid_headers=("set-cookie",)), "inj")


# ---- gossip packets -----------------------------------------------------------------------------------

def test_gossip_packets_are_sealed_as_the_nodes_seal_them():
    key = codec.derive_key(b"cluster-key", "test")
    dec = codec.Decoder(key, wall=lambda: 1000.0)
    msg = Message(PING, "mallory", 7, "n1")
    p = wire.gossip_packet(key, msg, counter=5, boot=42, sent_at_ms=1_000_000)
    enc = codec.Encoder(key, wall=lambda: 1000.0, boot=42)
    assert wire.gossip_packet(key, msg, counter=1, boot=42, sent_at_ms=1_000_000) == enc.encode(msg)
    assert dec.decode(p) == msg
    with pytest.raises(codec.PacketDropped, match="replayed"):
        dec.decode(p)
    flipped = bytearray(wire.gossip_packet(key, msg, counter=6, boot=42, sent_at_ms=1_000_000))
    flipped[len(flipped) // 3] ^= 0x10
    with pytest.raises(codec.PacketDropped, match="forged"):
        dec.decode(bytes(flipped))
    assert wire.message_kind(key, p) == PING and wire.message_kind(b"x" * 32, p) is None
    assert wire.open_message(key, p)[wire.BODY_BOOT] == 42


def test_stale_and_far_future_packets_fail_or_pass_the_window_as_on_a_node():
    key = codec.derive_key(b"cluster-key")
    dec = codec.Decoder(key, wall=lambda: 100_000.0, window=120.0)
    ping = Message(PING, "n2", 1, "n1")
    for sent_at in (100_000.0 - 3600, 100_000.0 + 3600, 100_000.0 - 121):
        with pytest.raises(codec.PacketDropped, match="stale"):
            dec.decode(wire.gossip_packet(key, ping, counter=1, sent_at_ms=int(sent_at * 1000)))
    # a key holder's far-future counter under n2's boot id refuses only its own copies
    dec.decode(wire.gossip_packet(key, ping, counter=2**32 - 1, boot=7, sent_at_ms=100_000_000))
    for n in (1, 2, 3):
        assert dec.decode(wire.gossip_packet(key, ping, counter=n, boot=7, sent_at_ms=100_000_000)) == ping
    with pytest.raises(codec.PacketDropped, match="undecodable"):  # beyond a uint32: not a v2 packet
        dec.decode(wire.gossip_packet(key, ping, counter=2**62, boot=7, sent_at_ms=100_000_000))


def test_frames_are_sealed_as_the_nodes_seal_them():
    key = codec.derive_key(b"cluster-key")
    packet = codec.Encoder(key).encode(Message(PING, "mallory", 7, "n1"))
    frame = wire.gossip_frame(key, packet)
    guard = ReplayGuard(120.0, 16)
    header, body = frame[:frames.HEADER_SIZE], frame[frames.HEADER_SIZE:]
    assert wire.HEADER_SIZE == 39 and body == packet
    assert frames.open_header(key, header, limit=10_000, guard=guard, now=time.time()) == len(packet)
    with pytest.raises(frames.FrameRefused, match="stream_replayed"):
        frames.open_header(key, header, limit=10_000, guard=guard, now=time.time())
    huge = wire.frame_header(key, 0xFFFFFFFF)
    with pytest.raises(frames.FrameRefused, match="stream_oversized"):
        frames.open_header(key, huge, limit=10_000, guard=guard, now=time.time())
    with pytest.raises(frames.FrameRefused, match="stream_forged"):
        frames.open_header(key, wire.frame_header(b"k" * 32, 10), limit=10_000, guard=guard, now=time.time())


def test_read_frame_reads_one_checked_reply():
    key = codec.derive_key(b"cluster-key")
    packet = codec.Encoder(key).encode(Message(PING, "n1", 3, "mallory"))
    for sent, expect in ((wire.gossip_frame(key, packet), packet),
                         (wire.gossip_frame(key, packet)[:20], None),  # partial: timed out
                         (wire.gossip_frame(key, packet)[:-1], None)):  # body cut short
        a, b = socket.socketpair()
        with a, b:
            a.sendall(sent)
            assert wire.read_frame(b, key, limit=10_000, timeout=0.2) == expect
    a, b = socket.socketpair()
    with a, b:
        a.sendall(wire.frame_header(b"k" * 32, 10))
        with pytest.raises(frames.FrameRefused, match="stream_forged"):
            wire.read_frame(b, key, limit=10_000, timeout=1.0)


# ---- the table ------------------------------------------------------------------------------------------

def test_the_table_has_at_least_60_cases_with_unique_names():
    names = [c.name for c in CASES]
    assert len(names) >= 60 and len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z0-9_]+", n) for n in names)


def test_every_area_of_the_brief_is_covered():
    cats = {c.category for c in CASES}
    assert {"http-parsing", "smuggling", "ranges", "paths", "ids", "auth-and-limits", "tus", "owner-hop",
            "listing", "storage", "gossip-udp", "gossip-tcp", "media", "slow-clients", "delete"} <= cats


def test_every_scenario_has_a_runner():
    for c in CASES:
        if isinstance(c.request, Scenario):
            assert c.request.fn in run.SCENARIOS, c.name


def test_docs_security_lists_every_case():
    doc = (ROOT / "docs" / "security.md").read_text()
    section = doc[doc.index("## The attack suite"):]
    missing = [c.name for c in CASES if f"`{c.name}`" not in section]
    assert not missing, f"docs/security.md does not list {missing} (python -m attack.cases prints the table)"


def test_the_markdown_table_has_a_row_per_case():
    rows = [l for l in markdown_table().splitlines() if l.startswith("| `")]
    assert len(rows) == len(CASES)
    assert isinstance(CASES[0], Case)
