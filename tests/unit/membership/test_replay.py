"""Replay protection (security finding): no single packet may silence a member.

Pure and deterministic: every clock is a list the test moves by hand.  The first test uses
only ``Encoder(key, wall=)`` and ``Decoder(key, wall=)``, so it runs unchanged against the
wire version 1 code (one counter per sender, seeded from the clock), where it fails.
"""

from __future__ import annotations

import hashlib
import hmac

import msgpack
import pytest

from membership.codec import VERSION, WINDOW, Decoder, Encoder, PacketDropped, derive_key
from membership.messages import ACK, GOSSIP, Message
from membership.replay import ReplayGuard

KEY = derive_key(b"secret", "c")
NOW = 1_700_000_000.0


def _drop(dec: Decoder, data: bytes) -> str:
    with pytest.raises(PacketDropped) as e:
        dec.decode(data)
    return e.value.reason


def _sealed(boot: int, counter: int, sent_at: float, msg: Message) -> bytes:
    """What a key holder can make: any boot, counter and time, correctly authenticated."""
    body = msgpack.packb([VERSION, boot, counter, int(sent_at * 1000), msg.kind, msg.sender,
                          msg.seq, msg.target, msg.target_addr, msg.join, []])
    return body + hmac.new(KEY, body, hashlib.sha256).digest()


def test_one_packet_with_a_far_future_counter_does_not_silence_the_real_member():
    receiver = [NOW]
    dec = Decoder(KEY, wall=lambda: receiver[0])
    # given: one authentic packet claiming to be n1 from an encoder that started while its
    # clock read 11 days ahead (a key holder, or n1's own earlier life before NTP stepped it
    # back); it is sent with a timestamp that is right now
    theirs = [NOW + 10**6]
    early = Encoder(KEY, wall=lambda: theirs[0])
    theirs[0] = NOW
    assert dec.decode(early.encode(Message(ACK, "n1", 1))).seq == 1
    # when: the real n1 sends its packets over the next minute
    real = Encoder(KEY, wall=lambda: receiver[0])
    heard = []
    for i in range(6):
        receiver[0] += 10
        try:
            heard.append(dec.decode(real.encode(Message(GOSSIP, "n1", 100 + i))).seq)
        except PacketDropped as e:
            heard.append(e.reason)
    # then: every one is heard
    assert heard == [100, 101, 102, 103, 104, 105]


def test_a_key_holders_packet_with_the_real_boot_and_the_largest_counter_is_harmless():
    clock = [NOW]
    dec = Decoder(KEY, wall=lambda: clock[0])
    real = Encoder(KEY, wall=lambda: clock[0], boot=77)
    assert dec.decode(real.encode(Message(ACK, "n1", 1))).seq == 1
    # given: the real boot id with the largest counter, and one dated at the window's edge
    assert dec.decode(_sealed(77, 2**32 - 1, NOW, Message(ACK, "n1", 2))).seq == 2
    assert dec.decode(_sealed(77, 2**32 - 2, NOW + WINDOW, Message(ACK, "n1", 3))).seq == 3
    assert _drop(dec, _sealed(77, 2**32 - 3, NOW + WINDOW + 1, Message(ACK, "n1", 4))) == "stale"
    # when / then: n1 goes on with counters 2, 3, ... and is heard throughout
    for i in range(50):
        clock[0] += 1
        assert dec.decode(real.encode(Message(GOSSIP, "n1", 10 + i))).seq == 10 + i


def test_replays_inside_the_window_are_dropped_and_outside_it_are_stale():
    clock = [NOW]
    enc, dec = Encoder(KEY, wall=lambda: clock[0]), Decoder(KEY, wall=lambda: clock[0])
    first, second = enc.encode(Message(ACK, "n1", 1)), enc.encode(Message(ACK, "n1", 2))
    assert dec.decode(second).seq == 2
    assert dec.decode(first).seq == 1  # reordered: fine
    for dt in (0.0, 1.0, WINDOW - 1):  # the same bytes again, at any time inside the window
        clock[0] = NOW + dt
        assert _drop(dec, first) == "replayed" and _drop(dec, second) == "replayed"
    clock[0] = NOW + WINDOW + 0.001
    assert _drop(dec, first) == "stale"
    assert len(dec.replay) == 0  # names leave with their window


@pytest.mark.parametrize("offset", [-WINDOW - 1, -3600, WINDOW + 1, 86400 * 365])
def test_packets_far_outside_the_window_are_dropped(offset):
    clock = [NOW]
    dec = Decoder(KEY, wall=lambda: clock[0])
    enc = Encoder(KEY, wall=lambda: NOW + offset)
    assert _drop(dec, enc.encode(Message(ACK, "n1", 1))) == "stale"
    assert len(dec.replay) == 0


@pytest.mark.parametrize("ahead,behind", [(25.0, 25.0), (90.0, 90.0)])
def test_a_restart_with_the_clock_stepped_back_is_heard(ahead, behind):
    receiver = [NOW]
    dec = Decoder(KEY, wall=lambda: receiver[0])
    # given: n1's first life, its clock `ahead` of the receiver's, was heard
    life1 = Encoder(KEY, wall=lambda: receiver[0] + ahead)
    for i in range(20):
        assert dec.decode(life1.encode(Message(GOSSIP, "n1", i))).seq == i
    # when: its host's clock is stepped back by ahead + behind (50 s; 3 minutes) and n1 restarts
    receiver[0] += 1
    life2 = Encoder(KEY, wall=lambda: receiver[0] - behind)
    # then: its packets are heard at once (a new boot id; nothing remembered stands in the way)
    for i in range(20):
        assert dec.decode(life2.encode(Message(GOSSIP, "n1", 100 + i))).seq == 100 + i
    assert life1.boot != life2.boot


def test_the_seen_set_is_bounded():
    clock = [NOW]
    dec = Decoder(KEY, wall=lambda: clock[0], memory=64)
    encs = [Encoder(KEY, wall=lambda: clock[0]) for _ in range(5)]
    kept = []
    for i in range(2000):
        clock[0] += 0.01  # 20 s in all: everything stays inside the window
        p = encs[i % 5].encode(Message(GOSSIP, f"n{i % 5}", i))
        assert dec.decode(p).seq == i
        assert len(dec.replay) <= 64
        kept.append(p)
    assert dec.replay.forgotten == 2000 - 64
    # the last 64 are remembered: their copies are refused
    assert all(_drop(dec, p) == "replayed" for p in kept[-64:])


def test_guard_table():
    g = ReplayGuard(window=10.0, capacity=3)
    assert g.check("a", 100.0, 100.0) is None
    assert g.check("a", 100.0, 105.0) == "replayed"
    assert g.check("b", 89.9, 100.0) == "stale"
    assert g.check("c", 110.1, 100.0) == "stale"
    assert g.check("b", 110.0, 100.0) is None  # the edge is inside
    assert g.check("c", 90.0, 100.0) is None
    assert g.check("d", 95.0, 100.0) is None  # full: "c" (sent longest ago) is pushed out
    assert len(g) == 3 and g.forgotten == 1
    assert g.check("c", 90.0, 100.0) is None  # fails open: a forgotten copy passes once more
    assert g.check("a", 100.0, 111.0) == "stale"  # a's window ended; its name is gone too
    assert len(g) <= 3
