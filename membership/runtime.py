"""The running service: the SWIM core over trio UDP, with TCP push-pull and TCP pings.

``Membership(node_id, gossip_addr=..., http_addr=..., cluster=..., key=..., seeds=...,
config=MembershipConfig(), log=...)`` binds UDP on ``gossip_addr`` and a TCP listener on the
same port for push-pull and for the fallback ping (a PING frame answered by an ACK frame on
the same connection: the core's ``StreamPing``); joins through ``seeds`` (every seed in turn,
rounds separated by ``join_backoff`` until one answers); then runs the core's timers.  All
protocol decisions are the core's (``state.py``); this module only moves bytes, keeps time
and reports (through the ``log`` seam, ``log.py``).  It takes nothing from the node: what
it needs is passed in.

Inbound TCP is bounded (``streams.py``): ``max_streams`` connections at once, an
authenticated header before any body is read (``frames.py``), frames of at most
``push_pull_limit(max_members)`` bytes, ``header_timeout`` and ``stream_timeout`` deadlines.
Every refusal is counted in ``statistics().dropped`` and logged (at most one line per
reason every ``DROP_LOG_INTERVAL`` seconds, with the running count).

Incarnation on start: ``int(time.time() * 1000)`` (milliseconds since the epoch).  Nodes keep
no durable state, and a restarted process must come back with an incarnation above anything
its previous life announced: a wall-clock seed does this as long as the clock does not step
back by more than the refutations of the previous life (each refutation adds one); if it
does, the others' "you are dead" answers make it refute above them.

Fault injection for tests: ``SHOAL_GOSSIP_DROP="n2,n3"`` in the environment,
or ``set_blocked({"n2", "n3"})`` at runtime, drops every gossip packet and
push-pull to or from those node ids (counted as ``blocked``).

Errors (``MembershipError``)::

    MembershipError
    └── BindError      the gossip port (UDP or TCP) could not be bound
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

import trio

from .codec import (MAX_DATAGRAM, Decoder, Encoder, PacketDropped, PacketTooLarge, derive_key,
                    push_pull_limit)
from .config import MembershipConfig
from .frames import FrameRefused
from .join import join_backoff
from .log import Log, stdlib_log
from .messages import ACK, PING, PUSH_PULL, Message, parse_addr
from .replay import ReplayGuard
from .state import (LeaveRequested, Member, MemberChanged, PushPullReceived, PushPullWith,
                    Received, Send, StreamAck, StreamAckReceived, StreamPing, StreamPingReceived,
                    Swim, Tick, WakeAt)
from .streams import (EVICTED_OLDEST, REFUSED, FrameError, StreamGate, peer_name,
                      receive_exactly, receive_frame, receive_header, send_frame)
from .transport import UdpTransport

DROP_LOG_INTERVAL = 10.0  # seconds between two log lines about drops of one reason
_STREAM_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, PacketTooLarge,
                  FrameError, FrameRefused)


class MembershipError(Exception):
    """Base of this package's runtime errors."""


class BindError(MembershipError):
    """The gossip port could not be bound (UDP or TCP)."""


@dataclass(frozen=True)
class MembershipStatistics:
    probes_sent: int
    indirect_probes_sent: int
    acks_received: int
    suspicions: int
    deaths: int
    refutations: int
    stream_pings_sent: int  # TCP fallback pings (a direct UDP probe went unanswered)
    stream_acks_received: int  # probes only the TCP ping saved
    health_score: int  # gauge, 0..7: Lifeguard local health; probe timers run (score + 1)x slower
    packets_sent: int
    packets_received: int
    bytes_sent: int
    bytes_received: int
    push_pulls: int
    dropped: Mapping[str, int] = field(default_factory=dict)  # reason -> packets or streams
    replay_forgotten: int = 0  # names a full replay seen-set pushed out early (replay.py)


class Membership:
    """One node's gossip membership.

    ``gossip_addr`` ("host:port") is bound (UDP and TCP) and announced; ``http_addr`` is
    announced.  ``seeds`` maps node ids to the gossip addresses to join through (this node's
    own entry is skipped); ``peers`` (default: ``seeds``) maps every other configured node to
    its gossip address, so that blocking works before a member is heard of and a node with
    no peers counts as joined.  ``key`` is the cluster key (``None``: unauthenticated, with a
    warning) and ``cluster`` the cluster name (salts the MAC key).
    """

    def __init__(self, node_id: str, *, gossip_addr: str, http_addr: str, cluster: str,
                 key: bytes | None, seeds: Mapping[str, str] = MappingProxyType({}),
                 peers: Mapping[str, str] | None = None,
                 config: MembershipConfig = MembershipConfig(), log: Log = stdlib_log,
                 clock: Callable[[], float] = trio.current_time, transport=None,
                 wall: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self.id = node_id
        self.gossip_addr = gossip_addr
        self.http_addr = http_addr
        self.config = config
        self._log = log
        self._seeds = {i: a for i, a in seeds.items() if i != node_id}
        self._peers = {i: a for i, a in (seeds if peers is None else peers).items()
                       if i != node_id}
        self._clock = clock
        self._wall = wall
        self._rng = rng or random.Random()
        self._mac_key = derive_key(key, cluster)
        self._encoder = Encoder(self._mac_key, wall=wall)
        self._decoder = Decoder(self._mac_key, wall=wall, window=config.packet_window,
                                memory=config.replay_memory)
        self._headers = ReplayGuard(config.packet_window, config.replay_memory)
        self._frame_limit = push_pull_limit(config.max_members)
        self._gate = StreamGate(config.max_streams)
        self._transport = transport or UdpTransport()
        self._incarnation = int(wall() * 1000)
        self._core: Swim | None = None
        self._clock0 = 0.0
        self._wall0 = 0.0
        self._listeners: list[Callable[[list[Member]], None]] = []
        self._changed = trio.Event()
        self._blocked: frozenset[str] = frozenset(
            x.strip() for x in os.environ.get("SHOAL_GOSSIP_DROP", "").split(",") if x.strip())
        self._addr_ids: dict[str, str] = {a: i for i, a in {**self._peers, **self._seeds}.items()}
        self._addr_ids[gossip_addr] = node_id
        self._drops: Counter[str] = Counter()
        self._drop_logged: dict[str, float] = {}
        self._packets_sent = self._packets_received = 0
        self._bytes_sent = self._bytes_received = 0
        self._push_pulls = 0
        self._outbox_send, self._outbox_recv = trio.open_memory_channel(1024)
        self._nursery: trio.Nursery | None = None
        self._wake_scope: trio.CancelScope | None = None
        self._wake_at = float("inf")
        if key is None:
            log("warning", "gossip_unkeyed",
                detail="no cluster key (auth: none): packets are checked, not authenticated")

    # ---- reading ---------------------------------------------------------------------------------
    def members(self) -> list[Member]:
        """Every member this node knows, ``since`` as unix time."""
        if self._core is None:
            return []
        return [self._unix(m) for m in self._core.members()]

    def alive_ids(self) -> set[str]:
        """Members alive or suspect (a suspect is still owed its work), ourselves included."""
        return self._core.alive_ids() if self._core is not None else {self.id}

    def joined(self) -> bool:
        """Heard from at least one other member, or the cluster has only this node."""
        if not self._peers:
            return True
        return self._core is not None and self._core.joined()

    @property
    def incarnation(self) -> int:
        return self._core.incarnation if self._core is not None else self._incarnation

    def statistics(self) -> MembershipStatistics:
        c = self._core.statistics() if self._core is not None else None
        return MembershipStatistics(
            probes_sent=c.probes_sent if c else 0,
            indirect_probes_sent=c.indirect_probes_sent if c else 0,
            acks_received=c.acks_received if c else 0,
            suspicions=c.suspicions if c else 0, deaths=c.deaths if c else 0,
            refutations=c.refutations if c else 0,
            stream_pings_sent=c.stream_pings_sent if c else 0,
            stream_acks_received=c.stream_acks_received if c else 0,
            health_score=c.health_score if c else 0,
            packets_sent=self._packets_sent, packets_received=self._packets_received,
            bytes_sent=self._bytes_sent, bytes_received=self._bytes_received,
            push_pulls=self._push_pulls, dropped=MappingProxyType(dict(self._drops)),
            replay_forgotten=self._decoder.replay.forgotten + self._headers.forgotten)

    # ---- change notification -----------------------------------------------------------------
    def add_listener(self, callback: Callable[[list[Member]], None]) -> None:
        """``callback(members)`` is called synchronously on every membership change."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[list[Member]], None]) -> None:
        self._listeners.remove(callback)

    async def wait_changed(self) -> None:
        """Return after the next membership change."""
        await self._changed.wait()

    # ---- fault injection ------------------------------------------------------------------------
    def set_blocked(self, ids) -> None:
        """Drop all gossip to and from these node ids (tests: simulate a partition)."""
        self._blocked = frozenset(ids)
        self._log("info", "gossip_blocked", ids=sorted(self._blocked))

    @property
    def blocked(self) -> frozenset[str]:
        return self._blocked

    # ---- running -----------------------------------------------------------------------------------
    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Bind, join and run until cancelled or ``leave()`` completes."""
        try:
            host, port = parse_addr(self.gossip_addr)
        except ValueError as e:
            raise BindError(str(e)) from None
        try:
            await self._transport.bind(host, port)
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as e:
            self._transport.close()
            raise BindError(f"gossip port {host}:{port}: {e}") from None
        self._clock0, self._wall0 = self._clock(), self._wall()
        self._core = Swim(self.id, self.gossip_addr, self.http_addr,
                          config=self.config, incarnation=self._incarnation,
                          now=self._clock(), rng=random.Random(self._rng.random()))
        self._log("info", "gossip_listening", addr=self.gossip_addr, incarnation=self._incarnation,
                  boot=self._encoder.boot, max_streams=self.config.max_streams,
                  frame_limit=self._frame_limit)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._receive_loop)
                nursery.start_soon(self._send_loop)
                nursery.start_soon(trio.serve_listeners, self._serve_stream, listeners)
                nursery.start_soon(self._timer_loop)
                nursery.start_soon(self._join)
                nursery.start_soon(self._seed_loop)
                self._feed(Tick())
                task_status.started()
        finally:
            self._nursery = None
            self._transport.close()

    async def leave(self) -> None:
        """Graceful leave: announce ``left``, keep gossiping one probe interval, then stop."""
        if self._core is None or self._nursery is None:
            return
        self._feed(LeaveRequested())
        await trio.sleep(self.config.probe_interval)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def stop(self) -> None:
        """Stop at once, without telling anyone (as a crash would)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # ---- the core's loop -----------------------------------------------------------------------
    def _feed(self, event) -> Message | None:
        """Run ``event`` through the core and carry out its actions; returns the
        ``StreamAck`` message (the answer to a stream ping), if any."""
        core = self._core
        changed = False
        reply = None
        for a in core.handle(self._clock(), event):
            if isinstance(a, Send):
                self._send(a)
            elif isinstance(a, WakeAt):
                self._wake_at = a.at
                if self._wake_scope is not None:
                    self._wake_scope.deadline = a.at
            elif isinstance(a, MemberChanged):
                m = a.member
                self._addr_ids[m.gossip_addr] = m.id
                self._log("info", "member_state", member=m.id, state=m.state,
                          incarnation=m.incarnation, was=a.was)
                changed = True
            elif isinstance(a, PushPullWith):
                if self._nursery is not None:
                    self._nursery.start_soon(self._push_pull, a.addr, a.join)
            elif isinstance(a, StreamPing):
                if self._nursery is not None:
                    self._nursery.start_soon(self._stream_ping, a)
            elif isinstance(a, StreamAck):
                reply = a.message
        if changed:
            self._changed.set()
            self._changed = trio.Event()
            if self._listeners:
                members = self.members()
                for cb in list(self._listeners):
                    cb(members)
        return reply

    async def _timer_loop(self) -> None:
        while True:
            with trio.CancelScope(deadline=self._wake_at) as scope:
                self._wake_scope = scope
                await trio.sleep_forever()
            self._wake_scope = None
            if self._clock() >= self._wake_at:
                self._feed(Tick())

    def _send(self, a: Send) -> None:
        if self._addr_ids.get(a.addr) in self._blocked:
            self._drop("blocked")
            return
        try:
            data = self._encoder.encode(a.message)
            self._outbox_send.send_nowait((data, a.addr))
        except PacketTooLarge:
            self._drop("too_large_out")
        except trio.WouldBlock:
            self._drop("send_queue_full")

    async def _send_loop(self) -> None:
        async for data, addr in self._outbox_recv:
            try:
                await self._transport.send(data, parse_addr(addr))
                self._packets_sent += 1
                self._bytes_sent += len(data)
            except (OSError, ValueError):
                self._drop("send_failed")

    async def _receive_loop(self) -> None:
        while True:
            try:
                data, (host, port) = await self._transport.receive()
            except OSError:  # e.g. ICMP port unreachable surfacing on some platforms
                continue
            self._packets_received += 1
            self._bytes_received += len(data)
            msg = self._open(data, MAX_DATAGRAM, f"{host}:{port}")
            if msg is None:
                continue
            if msg.kind == PUSH_PULL:
                self._drop("undecodable", peer=f"{host}:{port}")  # full state: by stream only
                continue
            self._feed(Received(f"{host}:{port}", msg))

    def _open(self, data: bytes, max_size: int, peer: str) -> Message | None:
        try:
            msg = self._decoder.decode(data, max_size=max_size)
        except PacketDropped as e:
            self._drop(e.reason, peer=peer, detail=str(e))
            return None
        if msg.sender in self._blocked:
            self._drop("blocked")
            return None
        return msg

    def _drop(self, reason: str, **fields) -> None:
        """Count a refused packet or stream; log it, at most once per reason per
        ``DROP_LOG_INTERVAL`` seconds (an attacker must not be able to flood the log)."""
        self._drops[reason] += 1
        now = self._clock()
        last = self._drop_logged.get(reason)
        if last is None or now - last >= DROP_LOG_INTERVAL:
            self._drop_logged[reason] = now
            self._log("warning" if reason not in ("blocked",) else "info", "gossip_dropped",
                      reason=reason, count=self._drops[reason], **fields)

    # ---- TCP: push-pull and the fallback ping, both directions -------------------------------
    async def _exchange(self, addr: str, packet: bytes, deadline: float) -> bytes | None:
        """Connect to ``addr``, send one frame, read the reply frame (header checked first)."""
        try:
            host, port = parse_addr(addr)
        except ValueError:
            return None
        with trio.move_on_after(max(0.0, deadline - self._clock())):
            try:
                stream = await trio.open_tcp_stream(host, port)
                async with stream:
                    await send_frame(stream, self._mac_key, packet, self._wall())
                    return await receive_frame(stream, self._mac_key, limit=self._frame_limit,
                                               guard=self._headers, now=self._wall)
            except FrameRefused as e:
                self._drop(e.reason, peer=addr)
            except _STREAM_ERRORS:
                pass
        return None

    async def _push_pull(self, addr: str, join: bool) -> bool:
        """Exchange full state with ``addr``; True if it answered."""
        if self._addr_ids.get(addr) in self._blocked:
            self._drop("blocked")
            return False
        try:
            request = self._encoder.encode(self._core.full_state(join=join),
                                           max_size=self._frame_limit)
        except PacketTooLarge:
            self._drop("too_large_out")
            return False
        reply = await self._exchange(addr, request, self._clock() + self.config.stream_timeout)
        if reply is None:
            return False
        msg = self._open(reply, self._frame_limit, addr)
        if msg is None or msg.kind != PUSH_PULL:
            return False
        self._push_pulls += 1
        self._feed(PushPullReceived(msg))
        return True

    async def _stream_ping(self, a: StreamPing) -> None:
        """memberlist's TCP fallback ping: PING frame out, ACK frame back, by ``a.deadline``."""
        if self._addr_ids.get(a.addr) in self._blocked:
            self._drop("blocked")
            return
        reply = await self._exchange(a.addr, self._encoder.encode(a.message), a.deadline)
        if reply is None or self._core is None:
            return
        msg = self._open(reply, MAX_DATAGRAM, a.addr)
        if msg is not None and msg.kind == ACK and msg.seq == a.message.seq:
            self._feed(StreamAckReceived(msg))

    async def _serve_stream(self, stream: trio.SocketStream) -> None:
        """One inbound connection: a slot of the gate, the header within ``header_timeout``,
        then at most one frame each way within ``stream_timeout``."""
        scope = trio.CancelScope(deadline=trio.current_time() + self.config.stream_timeout)
        outcome, token = self._gate.enter(scope.cancel, trio.current_time())
        if outcome == REFUSED:
            self._drop("stream_refused")
            await trio.aclose_forcefully(stream)
            return
        if outcome == EVICTED_OLDEST:
            self._drop("stream_evicted")
        try:
            with scope:
                await self._answer_stream(stream, token)
            if scope.cancelled_caught and trio.current_time() >= scope.deadline:
                self._drop("stream_timeout")  # (otherwise it was evicted: counted above)
        finally:
            self._gate.leave(token)
            await trio.aclose_forcefully(stream)

    async def _answer_stream(self, stream: trio.SocketStream, token: int) -> None:
        peer = peer_name(stream)
        try:
            length = None
            with trio.move_on_after(self.config.header_timeout):
                length = await receive_header(stream, self._mac_key, limit=self._frame_limit,
                                              guard=self._headers, now=self._wall)
            if length is None:
                self._drop("stream_timeout", peer=peer, detail="no header")
                return
            if not self._gate.authenticate(token):
                return  # evicted while its header was being checked
            data = await receive_exactly(stream, length)
            msg = self._open(data, self._frame_limit, peer)
            if msg is None or self._core is None:
                return
            if msg.kind == PING:  # fallback ping: answer on the same stream
                ack = self._feed(StreamPingReceived(msg))
                if ack is not None:
                    await send_frame(stream, self._mac_key, self._encoder.encode(ack), self._wall())
                return
            if msg.kind != PUSH_PULL:
                return
            reply = self._encoder.encode(self._core.full_state(), max_size=self._frame_limit)
            self._push_pulls += 1
            self._feed(PushPullReceived(msg))
            await send_frame(stream, self._mac_key, reply, self._wall())
        except FrameRefused as e:
            self._drop(e.reason, peer=peer)
        except _STREAM_ERRORS:
            return

    # ---- joining ---------------------------------------------------------------------------------
    async def _join(self) -> None:
        seeds = sorted(self._seeds.items())
        attempt = 0
        while seeds and not self._core.joined():
            order = list(seeds)
            self._rng.shuffle(order)
            via = []
            for sid, addr in order:
                # Every seed, not just the first that answers (as memberlist's Join): nodes started
                # together could otherwise join through different seeds that had not met yet and
                # form two islands that never hear of each other.
                if await self._push_pull(addr, join=True):
                    via.append(sid)
            if via:
                self._log("info", "gossip_joined", via=via[0], seeds=via, attempts=attempt + 1)
                return
            if self._core.joined():  # someone reached us meanwhile
                return
            attempt += 1
            delay = join_backoff(attempt, self.config.probe_interval,
                                 10 * self.config.probe_interval, self._rng.random())
            if attempt in (1, 5) or attempt % 20 == 0:
                self._log("info", "gossip_join_retry", attempt=attempt, delay=round(delay, 3))
            await trio.sleep(delay)

    async def _seed_loop(self) -> None:
        """Every push-pull interval, exchange state with one seed this node has never heard of.

        Joins that raced (two seeds each answering before they had met) leave islands that
        gossip alone never merges: no member of one island is known to the other.  A seed
        missing from the table is the evidence; one push-pull with it merges the two tables.
        """
        seeds = sorted(self._seeds.items())
        while seeds:
            await trio.sleep(self.config.push_pull_interval * (0.5 + self._rng.random()))
            if self._core is None or self._core.leaving:
                return
            unknown = [(sid, addr) for sid, addr in seeds if self._core.member(sid) is None]
            if unknown:
                sid, addr = self._rng.choice(unknown)
                if await self._push_pull(addr, join=False):
                    self._log("info", "gossip_seed_merged", via=sid)

    def _unix(self, m: Member) -> Member:
        return Member(m.id, m.gossip_addr, m.http_addr, m.state, m.incarnation,
                      round(self._wall0 + (m.since - self._clock0), 3))
