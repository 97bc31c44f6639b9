"""Membership over real UDP/TCP on 127.0.0.1, several instances in one trio run."""

from __future__ import annotations

import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from membership import ALIVE, DEAD, LEFT, Membership, MembershipConfig
from membership.transport import UdpTransport
from membership.codec import Encoder, derive_key
from membership.messages import PING, Message

KEY = b"test-cluster-key"
FAST = MembershipConfig(probe_interval=0.1, probe_timeout=0.05, suspicion_mult=4,
                        push_pull_interval=2.0, stream_timeout=1.0)


def _free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1."""
    while True:
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


@dataclass(frozen=True)
class _Cluster:
    """What a node would read from its cluster.yml: every node's addresses and the seeds."""
    gossip: dict[str, str]
    http: dict[str, str]
    seeds: tuple[str, ...]

    @property
    def ids(self) -> list[str]:
        return list(self.gossip)

    def port(self, node_id: str) -> int:
        return int(self.gossip[node_id].rpartition(":")[2])

    def only(self, ids, seeds) -> "_Cluster":
        return _Cluster({i: self.gossip[i] for i in ids}, {i: self.http[i] for i in ids}, seeds)

    def membership(self, node_id: str, config: MembershipConfig = FAST, **kw) -> Membership:
        return Membership(node_id, gossip_addr=self.gossip[node_id], http_addr=self.http[node_id],
                          cluster="test", key=KEY,
                          seeds={s: self.gossip[s] for s in self.seeds},
                          peers=self.gossip, config=config, **kw)


def _config(n: int, seeds: int = 2) -> _Cluster:
    ids = [f"n{i}" for i in range(n)]
    return _Cluster({i: f"127.0.0.1:{_free_port()}" for i in ids},
                    {i: f"127.0.0.1:{_free_port()}" for i in ids}, tuple(ids[:seeds]))


async def _wait_for(pred, timeout: float, what: str) -> None:
    with trio.move_on_after(timeout):
        while not pred():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for: {what}")


def _view(m: Membership, member: str) -> str | None:
    return next((x.state for x in m.members() if x.id == member), None)


async def _start_all(nursery, cfg: _Cluster) -> dict[str, Membership]:
    ms = {i: cfg.membership(i) for i in cfg.ids}
    for m in ms.values():
        await nursery.start(m.serve)
    return ms


def _converged(ms: dict[str, Membership]) -> bool:
    """Every node sees every node alive."""
    return all(m.alive_ids() == set(ms) for m in ms.values())


@asynccontextmanager
async def _running(n: int):
    """``n`` nodes joined through two seeds until each sees all alive: yields the config, the
    memberships by id and the nursery they serve in; stops them all at the end."""
    cfg = _config(n)
    async with trio.open_nursery() as nursery:
        ms = await _start_all(nursery, cfg)
        await _wait_for(lambda: _converged(ms), 5, "converge")
        yield cfg, ms, nursery
        nursery.cancel_scope.cancel()


async def test_converge_then_kill_is_declared_dead_everywhere():
    # given: four nodes joined through two seeds
    async with _running(4) as (cfg, ms, _nursery):
        assert all(m.joined() for m in ms.values())
        m3 = ms["n3"]
        assert {x.id: x.state for x in ms["n0"].members()} == {i: ALIVE for i in ms}
        assert all(x.http_addr == cfg.http[x.id] for x in ms["n0"].members())
        # when: n3 stops without a word
        m3.stop()
        # then: every other node declares it dead
        await _wait_for(lambda: all(_view(m, "n3") == DEAD for i, m in ms.items() if i != "n3"),
                        10, "n3 dead everywhere")
        stats = ms["n0"].statistics()
        assert stats.probes_sent > 0 and stats.acks_received > 0 and stats.bytes_sent > 0
        # and no live node was ever declared dead
        assert all(_view(m, j) == ALIVE for i, m in ms.items() if i != "n3"
                   for j in ms if j != "n3")


async def test_restart_rejoins_with_higher_incarnation():
    async with _running(3) as (cfg, ms, nursery):
        old = ms["n2"].incarnation
        ms["n2"].stop()
        await _wait_for(lambda: _view(ms["n0"], "n2") == DEAD, 10, "n2 dead")
        await trio.sleep(0.01)
        again = cfg.membership("n2")
        await nursery.start(again.serve)
        await _wait_for(lambda: _view(ms["n0"], "n2") == ALIVE and _view(ms["n1"], "n2") == ALIVE,
                        5, "n2 alive again")
        inc = next(x.incarnation for x in ms["n0"].members() if x.id == "n2")
        assert inc > old


async def test_leave_is_left_not_dead_and_listeners_hear_it():
    seen: list[list] = []
    async with _running(3) as (_cfg, ms, _nursery):
        ms["n0"].add_listener(seen.append)
        await ms["n1"].leave()
        await _wait_for(lambda: _view(ms["n0"], "n1") == LEFT and _view(ms["n2"], "n1") == LEFT,
                        5, "n1 left")
        await trio.sleep(1.0)  # well past a suspicion timeout: still left, never dead
        assert _view(ms["n0"], "n1") == LEFT and _view(ms["n2"], "n1") == LEFT
        assert seen and any(x.id == "n1" and x.state == LEFT for x in seen[-1])


async def test_blocked_peer_is_declared_dead_then_returns_when_unblocked():
    async with _running(3) as (_cfg, ms, _nursery):
        # when: n2 is cut off from everyone (both directions)
        ms["n2"].set_blocked({"n0", "n1"})
        ms["n0"].set_blocked({"n2"})
        ms["n1"].set_blocked({"n2"})
        await _wait_for(lambda: _view(ms["n0"], "n2") == DEAD, 10, "n2 dead for n0")
        assert ms["n0"].statistics().dropped["blocked"] > 0
        # then: healing brings it back (it learns it was declared dead and refutes)
        for m in ms.values():
            m.set_blocked(())
        await _wait_for(lambda: _view(ms["n0"], "n2") == ALIVE and _view(ms["n1"], "n2") == ALIVE,
                        10, "n2 alive again")


async def test_forged_and_replayed_packets_are_dropped_and_counted():
    async with _running(2) as (cfg, ms, _nursery):
        target = ("127.0.0.1", cfg.port("n0"))
        good = Encoder(derive_key(KEY, "test")).encode(Message(PING, "intruder", 1, "n0"))
        forged = Encoder(derive_key(b"wrong key", "test")).encode(Message(PING, "intruder", 2, "n0"))
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.bind(("127.0.0.1", 0))
            for data in (good, good, forged, good[:10], b"\x00" * 5000, good[:-1] + b"x"):
                await sock.sendto(data, target)
            await _wait_for(lambda: sum(ms["n0"].statistics().dropped.values()) >= 5, 3, "drops")
        dropped = ms["n0"].statistics().dropped
        assert dropped["replayed"] == 1
        assert dropped["forged"] == 2
        assert dropped["truncated"] == 1
        assert dropped["oversized"] == 1
        # and the node is still fine
        assert ms["n0"].alive_ids() == {"n0", "n1"}


async def test_single_node_cluster_is_joined():
    cfg = _config(1, seeds=1)
    async with trio.open_nursery() as nursery:
        m = cfg.membership("n0")
        await nursery.start(m.serve)
        assert m.joined() and m.alive_ids() == {"n0"}
        nursery.cancel_scope.cancel()


async def test_islands_formed_at_start_merge_through_the_seeds():
    # given: n0, n1 know every node as a seed; n2, n3 start later from a config naming only
    # themselves, so they form an island that never contacts n0 or n1 (as two joins that raced
    # through different seeds would)
    full = _config(4, seeds=4)
    island = full.only(["n2", "n3"], seeds=("n2", "n3"))
    async with trio.open_nursery() as nursery:
        ms = {i: full.membership(i) for i in ("n0", "n1")}
        for m in ms.values():
            await nursery.start(m.serve)
        await _wait_for(lambda: all(m.alive_ids() == {"n0", "n1"} for m in ms.values()), 5, "A")
        for i in ("n2", "n3"):
            ms[i] = island.membership(i)
            await nursery.start(ms[i].serve)
        # when / then: n0 and n1 find seeds they have never heard of and merge the two tables
        await _wait_for(lambda: _converged(ms), 10, "merged")
        nursery.cancel_scope.cancel()


class _MuteUdp(UdpTransport):
    """Receives datagrams but every one it sends is lost (UDP out blocked, TCP fine)."""

    async def send(self, data: bytes, addr: tuple[str, int]) -> None:
        return None


async def test_node_whose_udp_is_lost_stays_alive_through_tcp_pings():
    cfg = _config(3)
    deaths: list[str] = []
    async with trio.open_nursery() as nursery:
        ms = {i: cfg.membership(i) for i in ("n0", "n1")}
        for m in ms.values():
            await nursery.start(m.serve)
        # given: n2 hears every datagram but none of its own gets out (its join is TCP)
        ms["n2"] = cfg.membership("n2", transport=_MuteUdp())
        await nursery.start(ms["n2"].serve)
        await _wait_for(lambda: _converged(ms), 5, "converge")
        for i in ("n0", "n1"):
            ms[i].add_listener(lambda members: deaths.extend(
                x.id for x in members if x.state == DEAD))
        # when: 20 probe intervals go by (n2 answers no UDP ping, yet answers TCP pings)
        await trio.sleep(20 * FAST.probe_interval)
        # then: n2 was never declared dead (the suspicion timeout is 0.4-2.4 s), and its
        # probes were saved by TCP pings on both sides
        assert not deaths and _view(ms["n0"], "n2") == ALIVE and _view(ms["n1"], "n2") == ALIVE
        assert ms["n0"].statistics().stream_acks_received > 0
        assert ms["n2"].statistics().stream_acks_received > 0
        assert 0 <= ms["n2"].statistics().health_score < 8
        nursery.cancel_scope.cancel()
