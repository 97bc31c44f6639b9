"""Bounded gossip TCP (security finding): the header rules and the gate, pure; then real
sockets on 127.0.0.1 in one trio run: a crowd of idle, slow and fat connections neither grows
memory without bound nor keeps a genuine push-pull out."""

from __future__ import annotations

import struct
import time
from collections import Counter
from msgspec.structs import replace

import pytest
import trio

from membership import ALIVE
from membership.codec import MAC_SIZE, UPDATE_MAX, Encoder, derive_key, push_pull_limit
from membership.frames import HEADER_SIZE, FrameRefused, open_header, seal_header
from membership.messages import PUSH_PULL, SUSPECT, Message, Update
from membership.replay import ReplayGuard
from membership.streams import ADMITTED, EVICTED_OLDEST, REFUSED, StreamGate
from test_udp_runtime import FAST, KEY, _config, _view, _wait_for

MAC_KEY = derive_key(KEY, "test")
NOW = 1_700_000_000.0


# ---- the header, pure ----------------------------------------------------------------------
def _open(header: bytes, *, limit: int = 10_000, guard: ReplayGuard | None = None,
          now: float = NOW) -> int:
    guard = ReplayGuard(120, 100) if guard is None else guard
    return open_header(MAC_KEY, header, limit=limit, guard=guard, now=now)


def _refusal(header: bytes, **kw) -> str:
    with pytest.raises(FrameRefused) as e:
        _open(header, **kw)
    return e.value.reason


def test_header_round_trip_and_every_refusal():
    h = seal_header(MAC_KEY, 1234, NOW)
    assert len(h) == HEADER_SIZE and _open(h) == 1234
    assert _refusal(struct.pack(">I", 4 << 20) + b"\0" * (HEADER_SIZE - 4)) == "stream_garbage"
    assert _refusal(seal_header(derive_key(b"other", "test"), 10, NOW)) == "stream_forged"
    assert _refusal(h[:6] + bytes([h[6] ^ 1]) + h[7:]) == "stream_forged"  # length changed
    assert _refusal(seal_header(MAC_KEY, 10, NOW - 121)) == "stream_stale"
    assert _refusal(seal_header(MAC_KEY, 10_001, NOW)) == "stream_oversized"
    guard = ReplayGuard(120, 100)
    assert _open(h, guard=guard) == 1234
    assert _refusal(h, guard=guard) == "stream_replayed"  # a captured header opens nothing


def test_frame_limit_fits_the_largest_table_of_max_members():
    # given: a table of 50 members with the longest ids and addresses the codec accepts
    rows = tuple(Update(SUSPECT, f"{i:064d}", 2**63 - 1, "h" * 255, "h" * 255, "o" * 64)
                 for i in range(50))
    packet = Encoder(MAC_KEY).encode(Message(PUSH_PULL, "s" * 64, 2**63 - 1, "t" * 64, "a" * 100,
                                             rows, True), max_size=10**7)
    # then: it fits the limit for 50 members, and the limit grows by one update row a member
    assert len(packet) <= push_pull_limit(50) < len(packet) + 16
    assert push_pull_limit(51) - push_pull_limit(50) == UPDATE_MAX
    assert push_pull_limit(1024) == 284 + 2 + 664 * 1024 + MAC_SIZE


# ---- the gate, pure --------------------------------------------------------------------------
def test_gate_evicts_the_oldest_pending_after_the_grace_and_never_an_authenticated_one():
    evicted: list[int] = []
    gate = StreamGate(3, grace=0.25)
    tokens = [gate.enter(lambda i=i: evicted.append(i), now=0.0)[1] for i in range(3)]
    assert gate.pending == 3
    # a newcomer inside the grace is refused; after it, it pushes out the oldest pending
    assert gate.enter(lambda: None, now=0.1) == (REFUSED, None)
    outcome, t4 = gate.enter(lambda: evicted.append(4), now=0.3)
    assert outcome == EVICTED_OLDEST and evicted == [0]
    assert not gate.authenticate(tokens[0])  # the evicted one cannot come back
    assert gate.authenticate(tokens[1]) and gate.authenticate(tokens[2]) and gate.authenticate(t4)
    # all slots authenticated: nobody is pushed out, newcomers are refused at once
    assert gate.enter(lambda: None, now=10.0) == (REFUSED, None)
    gate.leave(tokens[1])
    assert gate.enter(lambda: None, now=10.0)[0] == ADMITTED
    assert gate.pending + gate.authenticated == 3


# ---- real sockets --------------------------------------------------------------------------
def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def _idle(port: int, stop: trio.Event) -> None:
    """Connects and says nothing."""
    try:
        s = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return
    async with s:
        with trio.move_on_after(30):
            await stop.wait()


async def _slow(port: int, stop: trio.Event) -> None:
    """Connects and trickles a byte every 50 ms, reconnecting when closed."""
    while not stop.is_set():
        try:
            s = await trio.open_tcp_stream("127.0.0.1", port)
            async with s:
                while not stop.is_set():
                    await s.send_all(b"S")
                    await trio.sleep(0.05)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            await trio.sleep(0.05)


async def _fat(port: int, stop: trio.Event, sent: list[int]) -> None:
    """The finding's attack: an unauthenticated 4 MiB frame, sent as fast as the server reads,
    over and over."""
    chunk = b"\0" * 65536
    while not stop.is_set():
        try:
            s = await trio.open_tcp_stream("127.0.0.1", port)
            async with s:
                await s.send_all(struct.pack(">I", 4 << 20))
                for _ in range(64):
                    await s.send_all(chunk)
                    sent[0] += len(chunk)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await trio.sleep(0.01)


async def _announce_oversized(port: int) -> str:
    """A key holder's authentic header announcing one byte more than the limit, and no body.
    Returns how the server answered: "closed" (it read the header and hung up without waiting
    for a body) or "busy" (every slot was taken; it closed before reading anything)."""
    header = seal_header(MAC_KEY, push_pull_limit(FAST.max_members) + 1, time.time())
    s = await trio.open_tcp_stream("127.0.0.1", port)
    async with s:
        await s.send_all(header)
        with trio.fail_after(5):
            try:
                data = await s.receive_some(100)
            except trio.BrokenResourceError:  # reset: closed with our header unread
                return "busy"
    assert data == b""
    return "closed"


async def test_a_crowd_of_idle_slow_and_fat_connections_is_bounded_and_push_pull_goes_through():
    config = replace(FAST, max_streams=8, header_timeout=0.5)
    cfg = _config(3, seeds=1)  # n2 will join through n0 alone, during the attack
    logs: list[tuple] = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        ms = {i: cfg.membership(i, config=config,
                                log=lambda lv, ev, **f: logs.append((lv, ev, f)))
              for i in ("n0", "n1")}
        for m in ms.values():
            await nursery.start(m.serve)
        await _wait_for(lambda: all(m.alive_ids() == {"n0", "n1"} for m in ms.values()), 5,
                        "converge")
        n0, port = ms["n0"], cfg.port("n0")
        rss0 = _rss_mib()
        # given: 150 idle connections, 30 slow ones and 16 pushing 4 MiB frames in a loop
        sent = [0]
        for _ in range(150):
            nursery.start_soon(_idle, port, stop)
        for _ in range(30):
            nursery.start_soon(_slow, port, stop)
        for _ in range(16):
            nursery.start_soon(_fat, port, stop, sent)
        peak_slots = peak_rss = 0.0

        async def watch():
            nonlocal peak_slots, peak_rss
            while not stop.is_set():
                peak_slots = max(peak_slots, n0._gate.pending + n0._gate.authenticated)
                peak_rss = max(peak_rss, _rss_mib() - rss0)
                await trio.sleep(0.01)
        nursery.start_soon(watch)
        await trio.sleep(1.0)
        # when: a key holder announces an oversized frame, and n2 joins through n0
        # (retried while the crowd holds every slot: a refused or evicted try is not the check)
        refused_unread = None
        for _ in range(200):
            before = n0.statistics().dropped.get("stream_oversized", 0)
            answer = await _announce_oversized(port)
            if n0.statistics().dropped.get("stream_oversized", 0) > before:
                refused_unread = answer
                break
            await trio.sleep(0.05)
        ms["n2"] = cfg.membership("n2", config=config)
        await nursery.start(ms["n2"].serve)
        # then: the join's push-pull went through, and n0 and n1 keep each other alive
        await _wait_for(lambda: ms["n2"].joined() and _view(n0, "n2") == ALIVE, 10, "n2 joins")
        await _wait_for(lambda: all(m.alive_ids() == {"n0", "n1", "n2"} for m in ms.values()),
                        10, "all three converge under attack")
        await trio.sleep(1.0)
        stop.set()
        dropped = dict(n0.statistics().dropped)
        assert n0.statistics().push_pulls >= 1
        assert refused_unread == "closed"  # refused on its header, without waiting for the body
        assert dropped.get("stream_oversized") == 1
        # the crowd was refused, evicted or timed out, and never held more than 8 slots
        assert peak_slots <= 8
        assert dropped.get("stream_evicted", 0) + dropped.get("stream_refused", 0) >= 150
        assert dropped.get("stream_garbage", 0) >= 16  # every fat frame: 39 bytes read, refused
        assert sent[0] > 0  # the fat senders did push
        # memory: 16 fat connections could pin 64 MiB before; now the growth is small
        assert peak_rss < 40, f"RSS grew {peak_rss:.1f} MiB"
        # and the refusals were logged, at most one line per reason per 10 s
        reasons = [f["reason"] for lv, ev, f in logs if ev == "gossip_dropped"]
        assert {"stream_evicted", "stream_garbage", "stream_oversized"} <= set(reasons)
        assert max(Counter(reasons).values()) <= 3
        nursery.cancel_scope.cancel()
