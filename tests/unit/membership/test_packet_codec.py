"""The wire codec: round trips, every drop reason, and a bounded fuzz of the decoder."""

from __future__ import annotations

import hashlib
import hmac

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from membership.codec import (ENVELOPE_MAX, MAC_SIZE, MAX_DATAGRAM, WINDOW, Decoder, Encoder,
                              PacketDropped, PacketTooLarge, derive_key)
from membership.messages import ACK, ALIVE, PING, PUSH_PULL, SUSPECT, Message, Update

KEY = derive_key(b"secret", "c")
NOW = 1_700_000_000.0


def _pair(now=NOW):
    clock = [now]
    return Encoder(KEY, wall=lambda: clock[0]), Decoder(KEY, wall=lambda: clock[0]), clock


def _drop(dec: Decoder, data: bytes) -> str:
    with pytest.raises(PacketDropped) as e:
        dec.decode(data)
    return e.value.reason


def test_round_trip():
    enc, dec, _ = _pair()
    msg = Message(PING, "n1", 7, "n2", "127.0.0.1:7002",
                  (Update(ALIVE, "n3", 5, "h:1", "h:2"), Update(SUSPECT, "n4", 2, origin="n1")))
    assert dec.decode(enc.encode(msg)) == msg


@pytest.mark.parametrize("mangle,reason", [
    (lambda p: p + b"\0" * MAX_DATAGRAM, "oversized"),
    (lambda p: p[:MAC_SIZE], "truncated"),
    (lambda p: p[:-MAC_SIZE - 1] + p[-MAC_SIZE:], "forged"),
    (lambda p: p[:-1] + bytes([p[-1] ^ 1]), "forged"),
    (lambda p: bytes([p[0] ^ 1]) + p[1:], "forged"),
])
def test_damaged_packets_are_dropped_with_a_reason(mangle, reason):
    enc, dec, _ = _pair()
    assert _drop(dec, mangle(enc.encode(Message(ACK, "n1", 1)))) == reason


def _sealed(body: bytes) -> bytes:
    return body + hmac.new(KEY, body, hashlib.sha256).digest()


@pytest.mark.parametrize("body", [
    b"\xc1",  # never-used msgpack byte
    msgpack.packb([1, 2, 3]),
    msgpack.packb([1, 1, int(NOW * 1000), "bogus", "n1", 0, "", "", False, []]),
    msgpack.packb([1, 1, int(NOW * 1000), "ack", "", 0, "", "", False, []]),
    msgpack.packb([1, 1, int(NOW * 1000), "ack", "n1", -1, "", "", False, []]),
    msgpack.packb([1, 1, int(NOW * 1000), "ack", "n1", 0, "", "", False, [["alive", "x"]]]),
    msgpack.packb({"a": 1}),
])
def test_authentic_but_malformed_is_undecodable(body):
    _, dec, _ = _pair()
    assert _drop(dec, _sealed(body)) == "undecodable"


def test_replayed_and_stale_packets_are_dropped():
    enc, dec, clock = _pair()
    first, second = enc.encode(Message(ACK, "n1", 1)), enc.encode(Message(ACK, "n1", 2))
    assert dec.decode(second).seq == 2
    assert dec.decode(first).seq == 1  # reordered within the window: fine
    assert _drop(dec, first) == "replayed"
    assert _drop(dec, second) == "replayed"
    late = enc.encode(Message(ACK, "n1", 3))
    clock[0] += WINDOW + 1
    assert _drop(dec, late) == "stale"


def test_other_cluster_key_is_forged():
    enc = Encoder(derive_key(b"other", "c"), wall=lambda: NOW)
    _, dec, _ = _pair()
    assert _drop(dec, enc.encode(Message(ACK, "n1", 1))) == "forged"


def test_encoder_refuses_oversized_datagrams():
    enc, _, _ = _pair()
    big = tuple(Update(ALIVE, f"{i:064d}", 1, "h" * 200, "h" * 200) for i in range(10))
    with pytest.raises(PacketTooLarge):
        enc.encode(Message(ACK, "n1", 1, updates=big))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_fuzz_random_bytes_never_escape(data):
    _, dec, _ = _pair()
    with pytest.raises(PacketDropped):
        dec.decode(data)


_any_msgpack = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**64 - 1)
    | st.floats() | st.text(max_size=80) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=12) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=40)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_any_msgpack, st.integers(min_value=0, max_value=20))
def test_fuzz_authentic_structures_never_escape(value, cut):
    # the worst case: a key holder sending arbitrary (or truncated) msgpack
    _, dec, _ = _pair()
    body = msgpack.packb(value)
    body = body[:len(body) - cut] if cut < len(body) else body
    try:
        msg = dec.decode(_sealed(body))
    except PacketDropped:
        return
    assert isinstance(msg, Message)


def test_the_largest_envelope_fits_its_budget():
    # given: every envelope field at its largest (boot and counter at 2**32 - 1, a far clock)
    enc = Encoder(KEY, wall=lambda: 9_999_999_999.0, boot=2**32 - 1)
    enc._counter = 2**32 - 2  # the next packet carries the largest counter
    msg = Message(PUSH_PULL, "s" * 64, 2**63 - 1, "t" * 64, "a" * 100, (), True)
    body = enc.encode(msg, max_size=10**6)[:-MAC_SIZE]
    # then: with the 3-byte header of a non-empty update list, it is within ENVELOPE_MAX
    assert len(body) - 1 + 3 <= ENVELOPE_MAX
    assert msgpack.unpackb(body)[1:3] == [2**32 - 1, 2**32 - 1]
