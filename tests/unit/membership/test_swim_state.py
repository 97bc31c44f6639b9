"""The pure SWIM core with an injected clock: given / when / then, no I/O."""

from __future__ import annotations

import random

from membership.codec import MAX_DATAGRAM, Encoder
from membership.messages import (ACK, ALIVE, DEAD, GOSSIP, LEFT, PING, PING_REQ, PUSH_PULL, SUSPECT,
                                 Message, Update)
from membership.state import (LeaveRequested, MemberChanged, PushPullReceived, Received, Send,
                              Swim, Tick, WakeAt)
from membership.config import MembershipConfig

T = MembershipConfig(probe_interval=1.0, probe_timeout=0.5, indirect_probes=3, suspicion_mult=4)


def _core(n_others: int = 4, now: float = 0.0) -> Swim:
    core = Swim("me", "me:1", "me:2", config=T, incarnation=10, now=now, rng=random.Random(7))
    table = tuple(Update(ALIVE, f"p{i}", 1, f"p{i}:1", f"p{i}:2") for i in range(n_others))
    core.handle(now, PushPullReceived(Message(PUSH_PULL, "p0", updates=table)))
    core.settle()
    return core


def _sends(actions, kind=None):
    return [a for a in actions if isinstance(a, Send) and (kind is None or a.message.kind == kind)]


def _state(core: Swim, mid: str) -> str:
    return core.member(mid).state


def test_handle_always_ends_with_a_wake():
    core = _core()
    actions = core.handle(0.0, Tick())
    assert isinstance(actions[-1], WakeAt) and actions[-1].at > 0.0


def test_probe_acked_keeps_target_alive():
    core = _core()
    pings = _sends(core.handle(1.0, Tick()), PING)
    assert len(pings) == 1
    ping = pings[0]
    core.handle(1.01, Received(ping.addr, Message(ACK, ping.message.target, ping.message.seq)))
    core.handle(2.0, Tick())
    assert _state(core, ping.message.target) == ALIVE
    assert core.statistics().acks_received == 1


def test_missed_ack_goes_indirect_then_suspects():
    core = _core()
    ping = _sends(core.handle(1.0, Tick()), PING)[0]
    target = ping.message.target
    # when: no ack by the probe timeout
    reqs = _sends(core.handle(1.5, Tick()), PING_REQ)
    # then: k = 3 other members are asked, none of them the target
    assert len(reqs) == 3 and all(r.message.target == target for r in reqs)
    assert target not in {r.addr.split(":")[0] for r in reqs}
    # and when the interval ends without any ack: suspect
    actions = core.handle(2.0, Tick())
    changes = [a for a in actions if isinstance(a, MemberChanged)]
    assert [(c.member.id, c.member.state, c.was) for c in changes] == [(target, SUSPECT, ALIVE)]
    assert core.statistics().suspicions == 1


def test_indirect_ack_counts():
    core = _core()
    ping = _sends(core.handle(1.0, Tick()), PING)[0]
    req = _sends(core.handle(1.5, Tick()), PING_REQ)[0]
    core.handle(1.6, Received(req.addr, Message(ACK, "relay", req.message.seq)))
    core.handle(2.0, Tick())
    assert _state(core, ping.message.target) == ALIVE


def test_relay_pings_target_and_forwards_ack():
    core = _core()
    out = core.handle(1.0, Received("p1:1", Message(PING_REQ, "p1", 42, "p2", "p2:1")))
    ping = _sends(out, PING)[0]
    assert ping.addr == "p2:1" and ping.message.target == "p2"
    out = core.handle(1.1, Received("p2:1", Message(ACK, "p2", ping.message.seq)))
    fwd = _sends(out, ACK)
    assert [(a.addr, a.message.seq) for a in fwd] == [("p1:1", 42)]


def test_suspect_times_out_to_dead_unless_refuted():
    core = _core(n_others=4)
    core.handle(0.0, Received("p1:1", Message(GOSSIP, "p1", updates=(
        Update(SUSPECT, "p3", 1, origin="p1"),))))
    assert _state(core, "p3") == SUSPECT
    # N = 5: min 4 s, max 24 s, k = 2; no confirmation yet -> dead at 24 s
    core.handle(23.9, Tick())
    assert _state(core, "p3") == SUSPECT
    core.handle(24.0, Tick())
    assert _state(core, "p3") == DEAD
    assert core.statistics().deaths == 1


def test_confirmations_shorten_the_suspicion():
    core = _core(n_others=4)
    for origin in ("p1", "p2"):
        core.handle(0.0, Received(f"{origin}:1", Message(GOSSIP, origin, updates=(
            Update(SUSPECT, "p3", 1, origin=origin),))))
    # one confirmation of k = 2: 24 - log(2)/log(3) * 20 = 11.38 s
    core.handle(11.3, Tick())
    assert _state(core, "p3") == SUSPECT
    core.handle(11.3, Received("p4:1", Message(GOSSIP, "p4", updates=(
        Update(SUSPECT, "p3", 1, origin="me"),))))
    # second confirmation (our own): down to the 4 s minimum, already past
    core.handle(11.31, Tick())
    assert _state(core, "p3") == DEAD


def test_alive_with_higher_incarnation_refutes_suspicion():
    core = _core()
    core.handle(0.0, Received("p1:1", Message(GOSSIP, "p1", updates=(
        Update(SUSPECT, "p3", 1, origin="p1"),))))
    core.handle(1.0, Received("p3:1", Message(GOSSIP, "p3", updates=(
        Update(ALIVE, "p3", 2, "p3:1", "p3:2"),))))
    assert _state(core, "p3") == ALIVE
    core.handle(30.0, Tick())
    assert _state(core, "p3") == ALIVE
    # and an old suspicion cannot come back
    core.handle(31.0, Received("p1:1", Message(GOSSIP, "p1", updates=(
        Update(SUSPECT, "p3", 1, origin="p2"),))))
    assert _state(core, "p3") == ALIVE


def test_suspicion_of_self_is_refuted_with_higher_incarnation():
    core = _core()
    out = core.handle(0.0, Received("p1:1", Message(GOSSIP, "p1", updates=(
        Update(SUSPECT, "me", 10, origin="p1"),))))
    assert core.incarnation == 11 and core.statistics().refutations == 1
    gossip = _sends(core.handle(0.2, Tick()), GOSSIP)
    assert any(u == Update(ALIVE, "me", 11, "me:1", "me:2") for g in gossip for u in g.message.updates)
    assert any(isinstance(a, MemberChanged) for a in out)


def test_stale_dead_about_self_is_ignored_current_one_refuted():
    core = _core()
    core.handle(0.0, Received("p1:1", Message(GOSSIP, "p1", updates=(Update(DEAD, "me", 9),))))
    assert core.incarnation == 10
    core.handle(0.0, Received("p1:1", Message(GOSSIP, "p1", updates=(Update(DEAD, "me", 10),))))
    assert core.incarnation == 11


def test_ping_from_a_member_held_dead_is_answered_with_its_death():
    core = _core()
    core.handle(0.0, Received("p1:1", Message(GOSSIP, "p1", updates=(Update(DEAD, "p2", 1),))))
    ack = _sends(core.handle(1.0, Received("p2:1", Message(PING, "p2", 5, "me"))), ACK)[0]
    assert ack.message.updates[0] == Update(DEAD, "p2", 1, origin="me")


def test_restarted_member_with_higher_incarnation_is_alive_again():
    core = _core()
    core.handle(0.0, Received("p1:1", Message(GOSSIP, "p1", updates=(Update(DEAD, "p2", 1),))))
    core.handle(1.0, PushPullReceived(Message(PUSH_PULL, "p2", updates=(
        Update(ALIVE, "p2", 1000, "p2:1", "p2:2"),), join=True)))
    m = core.member("p2")
    assert (m.state, m.incarnation) == (ALIVE, 1000)


def test_push_pull_reads_remote_dead_as_suspect():
    core = _core()
    core.handle(0.0, PushPullReceived(Message(PUSH_PULL, "p1", updates=(
        Update(DEAD, "p2", 1, origin="p1"),))))
    assert _state(core, "p2") == SUSPECT


def test_leave_is_announced_and_never_becomes_dead():
    core = _core()
    out = core.handle(0.0, LeaveRequested())
    told = _sends(out, GOSSIP)
    assert len(told) >= 3 and all(g.message.updates == (Update(LEFT, "me", 10),) for g in told)
    assert _state(core, "me") == LEFT
    # a peer hearing it: left, and a later dead rumour does not overwrite it
    peer = _core()
    peer.handle(0.0, Received("p1:1", Message(GOSSIP, "p1", updates=(Update(LEFT, "p3", 1),))))
    peer.handle(0.1, Received("p1:1", Message(GOSSIP, "p1", updates=(Update(DEAD, "p3", 1),))))
    assert _state(peer, "p3") == LEFT


def test_dead_member_is_upgraded_to_left_when_the_leave_arrives_late():
    core = _core()
    core.handle(0.0, Received("p1:1", Message(GOSSIP, "p1", updates=(Update(DEAD, "p3", 1),))))
    core.handle(0.1, Received("p1:1", Message(GOSSIP, "p1", updates=(Update(LEFT, "p3", 1),))))
    assert _state(core, "p3") == LEFT


def test_unknown_member_is_learned_from_alive_gossip_only():
    core = _core()
    core.handle(0.0, Received("p1:1", Message(GOSSIP, "p1", updates=(Update(SUSPECT, "x", 1),))))
    assert core.member("x") is None
    core.handle(0.0, Received("p1:1", Message(GOSSIP, "p1", updates=(Update(ALIVE, "x", 1, "x:1"),))))
    assert _state(core, "x") == ALIVE and core.joined()


def test_piggyback_never_exceeds_the_datagram_limit():
    # given: 300 members with the longest ids and addresses, all news at once
    core = Swim("m" * 64, "h" * 40 + ":65535", "h" * 40 + ":65535", config=T, incarnation=2**62,
                now=0.0, rng=random.Random(1))
    table = tuple(Update(ALIVE, f"{i:064d}", 2**62, "h" * 90 + ":65535", "h" * 90 + ":65535")
                  for i in range(300))
    core.handle(0.0, PushPullReceived(Message(PUSH_PULL, "x", updates=table)))
    enc = Encoder(b"k" * 32)
    t = 0.0
    sent = 0
    while t < 5.0:
        t += 0.1
        for a in _sends(core.handle(t, Tick())):
            assert len(enc.encode(a.message)) <= MAX_DATAGRAM
            sent += 1
    assert sent > 10
