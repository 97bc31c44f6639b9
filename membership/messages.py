"""The vocabulary of the gossip protocol: membership facts and packets.

Pure data, shared by the state machine (``state.py``), the wire codec
(``codec.py``) and the simulator (``sim.py``).  Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

ALIVE = "alive"
SUSPECT = "suspect"
DEAD = "dead"
LEFT = "left"
STATES = (ALIVE, SUSPECT, DEAD, LEFT)

# Packet kinds.
PING = "ping"          # direct probe: target answers with ACK(seq)
PING_REQ = "ping-req"  # "probe target for me": the relay pings, then forwards ACK(seq)
ACK = "ack"
GOSSIP = "gossip"      # piggyback-only packet sent on the gossip tick
PUSH_PULL = "push-pull"  # full state, over a stream (TCP), request and reply alike
KINDS = (PING, PING_REQ, ACK, GOSSIP, PUSH_PULL)


@dataclass(frozen=True, slots=True)
class Update:
    """One membership fact: ``id`` is ``kind`` at ``incarnation``.

    ``addr``/``http`` travel with ``alive`` facts (how to reach the member);
    ``origin`` names who suspects or declares (``suspect``/``dead``), so that
    independent suspicions count as confirmations.
    """

    kind: str
    id: str
    incarnation: int
    addr: str = ""
    http: str = ""
    origin: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """One packet's protocol content (the codec adds authentication and replay data).

    ``seq`` pairs probes with acks; ``target``/``target_addr`` name whom a
    ping or ping-req is about; ``updates`` are the piggybacked facts (for
    PUSH_PULL: the sender's whole member table); ``join`` marks the first
    push-pull of a joining node.
    """

    kind: str
    sender: str
    seq: int = 0
    target: str = ""
    target_addr: str = ""
    updates: tuple[Update, ...] = ()
    join: bool = False


def parse_addr(addr: str) -> tuple[str, int]:
    """``"127.0.0.1:7001"`` -> ``("127.0.0.1", 7001)``; raises ValueError."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host:
        raise ValueError(f"not host:port: {addr!r}")
    return host.strip("[]"), int(port)
