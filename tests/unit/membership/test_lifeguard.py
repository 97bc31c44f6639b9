"""Surviving heavy loss: local health (LHM), the stream fallback ping, the buddy system,
direct corrections; the formulas as tables, the core with an injected clock, then the
simulator at 20% loss."""

from __future__ import annotations

import random

import pytest

from membership.awareness import (MAX_HEALTH_MULTIPLIER, PROBE_FAILED, PROBE_SUCCEEDED, REFUTED,
                                  Awareness, health_after, scale_by_health)
from membership.messages import (ACK, ALIVE, DEAD, GOSSIP, PING, PING_REQ, PUSH_PULL, SUSPECT,
                                 Message, Update)
from membership.sim import DATA_RTO, SYN_RTO, Simulation, stream_delay
from membership.state import (MemberChanged, PushPullReceived, Received, Send, StreamAck,
                              StreamAckReceived, StreamPing, StreamPingReceived, Swim, Tick)
from membership.config import MembershipConfig

T = MembershipConfig(probe_interval=1.0, probe_timeout=0.5, indirect_probes=3, suspicion_mult=4)


def _core(n_others: int = 4) -> Swim:
    core = Swim("me", "me:1", "me:2", config=T, incarnation=10, now=0.0, rng=random.Random(7))
    table = tuple(Update(ALIVE, f"p{i}", 1, f"p{i}:1", f"p{i}:2") for i in range(n_others))
    core.handle(0.0, PushPullReceived(Message(PUSH_PULL, "p0", updates=table)))
    core.settle()
    return core


def _of(actions, cls, kind=None):
    return [a for a in actions if isinstance(a, cls)
            and (kind is None or getattr(a, "message", None) is None or a.message.kind == kind)]


def _fail_probe(core: Swim, start: float) -> tuple[Send, float]:
    """Start a probe at ``start``, let it go unanswered; returns the ping and its end time."""
    ping = _of(core.handle(start, Tick()), Send, PING)[0]
    end = start + scale_by_health(T.probe_interval, core.health_score)
    return ping, end


# ---- formulas -----------------------------------------------------------------------------
@pytest.mark.parametrize("score,delta,max_score,expected", [
    (0, PROBE_SUCCEEDED, 8, 0),  # floor at 0
    (0, PROBE_FAILED, 8, 1),
    (3, REFUTED, 8, 4),
    (7, PROBE_FAILED, 8, 7),  # ceiling at max - 1 (memberlist: score < max)
    (5, -1, 8, 4),
    (2, 10, 8, 7),
    (2, -10, 8, 0),
    (0, 1, 1, 0),  # max 1: LHM off
])
def test_health_after(score, delta, max_score, expected):
    assert health_after(score, delta, max_score) == expected


@pytest.mark.parametrize("seconds,score,expected", [
    (1.0, 0, 1.0), (1.0, 1, 2.0), (0.5, 3, 2.0), (1.0, 7, 8.0), (0.3, 2, 0.3 * 3)])
def test_scale_by_health(seconds, score, expected):
    assert scale_by_health(seconds, score) == pytest.approx(expected)


def test_awareness_reports_changes_and_stays_in_range():
    a = Awareness()
    assert not a.apply(-1) and a.score == 0
    assert all(a.apply(+1) for _ in range(MAX_HEALTH_MULTIPLIER - 1))
    assert not a.apply(+1) and a.score == MAX_HEALTH_MULTIPLIER - 1
    assert a.scale(1.0) == MAX_HEALTH_MULTIPLIER


class _Draws:
    """A scripted ``random.random``."""

    def __init__(self, *values: float) -> None:
        self._v = list(values)

    def __call__(self) -> float:
        return self._v.pop(0)


@pytest.mark.parametrize("draws,handshake,expected", [
    ((0.9, 0.9, 0.9), True, 3 * 0.01),  # SYN, SYN-ACK, request through: three crossings
    ((0.1, 0.9, 0.9, 0.9), True, SYN_RTO + 3 * 0.01),  # SYN lost: one SYN timeout
    ((0.9, 0.1, 0.1, 0.9, 0.9, 0.9), True, 3 * SYN_RTO + 3 * 0.01),  # SYN-ACK, then SYN lost: 1 + 2 s
    ((0.9, 0.9, 0.1, 0.9), True, DATA_RTO + 3 * 0.01),  # request lost once
    ((0.9,), False, 0.01),  # the reply through
    ((0.1, 0.1, 0.9), False, 3 * DATA_RTO + 0.01),  # reply lost twice: 0.2 + 0.4 s
])
def test_stream_delay(draws, handshake, expected):
    assert stream_delay(_Draws(*draws), 0.2, 0.01, handshake=handshake) == pytest.approx(expected)


# ---- local health in the core ---------------------------------------------------------------
def test_failed_probe_raises_health_score_and_stretches_the_next_probe():
    core = _core(n_others=5)  # three relays left besides the next target and the suspect
    ping, end = _fail_probe(core, 1.0)
    assert core.health_score == 0 and end == 2.0
    core.handle(1.5, Tick())  # indirect probes, no answer either
    actions = core.handle(2.0, Tick())  # the probe fails: suspect, score 1, next probe ping
    assert core.health_score == 1 and core.statistics().health_score == 1
    nxt = _of(actions, Send, PING)[0]
    # then: the next probe's timeout and interval are twice as long
    assert not _of(core.handle(2.99, Tick()), Send, PING_REQ)  # 0.5 s is not enough anymore
    assert len(_of(core.handle(3.0, Tick()), Send, PING_REQ)) == 3
    assert not _of(core.handle(3.99, Tick()), Send, PING)  # nor is 1 s
    core.handle(3.5, Received(nxt.addr, Message(ACK, nxt.message.target, nxt.message.seq)))
    assert _of(core.handle(4.0, Tick()), Send, PING)
    # and an acked probe lowers the score again
    assert core.health_score == 0


def test_refuting_a_suspicion_raises_health_score():
    core = _core()
    core.handle(0.5, Received("p1:1", Message(GOSSIP, "p1", updates=(
        Update(SUSPECT, "me", 10, origin="p1"),))))
    assert core.incarnation == 11 and core.health_score == 1


def test_health_score_never_exceeds_its_ceiling():
    core = _core(n_others=2)
    t = 1.0
    for _ in range(20):
        _, end = _fail_probe(core, t)
        core.handle(t + 0.01, PushPullReceived(Message(PUSH_PULL, "p0", updates=tuple(
            Update(ALIVE, f"p{i}", 100 + int(t), f"p{i}:1", f"p{i}:2") for i in range(2)))))
        t = end
    assert core.health_score == MAX_HEALTH_MULTIPLIER - 1


# ---- the stream fallback ping --------------------------------------------------------------
def test_unanswered_ping_also_goes_over_a_stream_until_the_interval_ends():
    core = _core()
    ping, end = _fail_probe(core, 1.0)
    actions = core.handle(1.5, Tick())
    streams = _of(actions, StreamPing)
    assert len(streams) == 1 and len(_of(actions, Send, PING_REQ)) == 3
    sp = streams[0]
    assert sp.addr == ping.addr and sp.deadline == end
    assert (sp.message.kind, sp.message.seq, sp.message.target) == (PING, ping.message.seq,
                                                                   ping.message.target)
    assert core.statistics().stream_pings_sent == 1


def test_stream_ack_saves_the_probe():
    core = _core()
    ping, end = _fail_probe(core, 1.0)
    sp = _of(core.handle(1.5, Tick()), StreamPing)[0]
    core.handle(1.8, StreamAckReceived(Message(ACK, ping.message.target, sp.message.seq)))
    actions = core.handle(end, Tick())
    assert not _of(actions, MemberChanged) and core.member(ping.message.target).state == ALIVE
    st = core.statistics()
    assert (st.acks_received, st.stream_acks_received, st.suspicions) == (1, 1, 0)
    assert core.health_score == 0


def test_stream_ack_for_another_probe_does_not_count():
    core = _core()
    ping, end = _fail_probe(core, 1.0)
    core.handle(1.5, Tick())
    core.handle(1.8, StreamAckReceived(Message(ACK, ping.message.target, ping.message.seq + 7)))
    core.handle(end, Tick())
    assert core.member(ping.message.target).state == SUSPECT


def test_stream_ping_is_answered_on_the_stream_with_an_ack():
    core = _core()
    actions = core.handle(0.5, StreamPingReceived(Message(PING, "p2", 41, "me")))
    acks = _of(actions, StreamAck)
    assert len(acks) == 1 and (acks[0].message.kind, acks[0].message.seq) == (ACK, 41)
    assert not _of(actions, Send)  # the answer rides the stream, not a datagram
    # a ping meant for a previous owner of our address gets no answer
    assert not _of(core.handle(0.6, StreamPingReceived(Message(PING, "p2", 42, "other"))),
                   StreamAck)


# ---- buddy system and direct corrections ---------------------------------------------------
def _suspect(core: Swim, mid: str, inc: int = 1, at: float = 0.5) -> None:
    core.handle(at, Received("p0:1", Message(GOSSIP, "p0", updates=(
        Update(SUSPECT, mid, inc, origin="p0"),))))
    assert core.member(mid).state == SUSPECT


def test_ping_to_a_suspect_carries_the_suspicion():
    core = _core(n_others=1)
    _suspect(core, "p0")
    ping = _of(core.handle(1.0, Tick()), Send, PING)[0]
    assert ping.message.target == "p0"
    assert ping.message.updates[0] == Update(SUSPECT, "p0", 1, origin="p0")


def test_suspect_that_writes_to_us_hears_its_suspicion():
    core = _core()
    _suspect(core, "p2")
    actions = core.handle(0.6, Received("p2:1", Message(GOSSIP, "p2")))
    replies = _of(actions, Send, GOSSIP)
    assert [(r.addr, r.message.updates) for r in replies] == [
        ("p2:1", (Update(SUSPECT, "p2", 1, origin="p0"),))]


def test_stale_suspicion_about_us_is_answered_with_our_alive_fact():
    core = _core()
    # given: we are at incarnation 10; p3 still pings us with a suspicion of incarnation 9
    actions = core.handle(0.5, Received("p3:1", Message(PING, "p3", 5, "me", updates=(
        Update(SUSPECT, "me", 9, origin="p3"),))))
    ack = _of(actions, Send, ACK)[0]
    # then: no refutation needed (it is stale), but the ack hands p3 our current incarnation
    assert core.incarnation == 10 and core.statistics().refutations == 0
    assert ack.message.updates[0] == Update(ALIVE, "me", 10, "me:1", "me:2")


def test_suspicion_at_a_newer_incarnation_restarts_the_timer():
    core = _core()
    _suspect(core, "p2", inc=1, at=0.5)
    first_deadline = 0.5 + 6 * 4 * 1.0  # fresh suspicion: max = 6 x min (N = 5: 4 s)
    # when: p2 is suspected at incarnation 2 (it refuted the first; we missed its alive fact)
    core.handle(20.0, Received("p1:1", Message(GOSSIP, "p1", updates=(
        Update(SUSPECT, "p2", 2, origin="p1"),))))
    assert core.member("p2").incarnation == 2 and core.member("p2").state == SUSPECT
    # then: the first deadline passes without a death; the new one runs from t = 20
    core.handle(first_deadline + 0.1, Tick())
    assert core.member("p2").state == SUSPECT
    core.handle(20.0 + 24.0 + 0.1, Tick())
    assert core.member("p2").state == DEAD


# ---- the simulator at 20% loss --------------------------------------------------------------
@pytest.mark.parametrize("seed", [21, 22])
def test_twenty_percent_loss_never_kills_a_live_node(seed):
    sim = Simulation.cluster(50, seed=seed, loss=0.20, latency=(0.001, 0.01))
    sim.run_for(240)
    deaths = [c for c in sim.changes if c.state == DEAD]
    assert not deaths, f"seed={seed}: {deaths[:3]}"
    assert all(len(node.core.alive_ids()) == 50 for node in sim.live()), f"seed={seed}"
    # the loss was felt: suspicions were raised and refuted, stream pings saved probes
    assert sum(1 for c in sim.changes if c.state == SUSPECT) > 100, f"seed={seed}"
    saved = sum(n.core.statistics().stream_acks_received for n in sim.nodes.values())
    assert saved > 50, f"seed={seed}"


def test_twenty_percent_loss_still_detects_a_kill():
    sim = Simulation.cluster(50, seed=23, loss=0.20, latency=(0.001, 0.01))
    sim.run_for(5)
    sim.kill("n1")
    done = sim.run_until(sim.now + 60, stop=lambda s: all(
        s.view(n.id, "n1") == DEAD for n in s.live()))
    assert done, "seed=23: n1 not dead everywhere within 60 s"
    assert not [c for c in sim.changes if c.state == DEAD and c.member != "n1"]
