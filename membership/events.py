"""What goes into the SWIM core and what comes out: events, actions, and what it reports.

``Swim.handle(now, event) -> actions`` (``state.py``) takes one of the events
below and returns a list of actions, the last always ``WakeAt``:

Events                              Actions
  Tick()          timers are due      Send(addr, Message)         one datagram
  Received(addr, Message)             PushPullWith(addr, join)    full-state exchange (stream)
  PushPullReceived(Message)           StreamPing(addr, Message, deadline)  ping over a stream
  StreamPingReceived(Message)         StreamAck(Message)          the answer to that stream ping
  StreamAckReceived(Message)          MemberChanged(Member, was)  a state transition (log it)
  LeaveRequested()                    WakeAt(t)                   feed a Tick at t (always last)

All plain frozen values: the runtime (``runtime.py``) and the simulator
(``sim.py``) execute the actions and feed back the events.
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import Message

# ---- events -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Tick:
    pass


@dataclass(frozen=True, slots=True)
class Received:
    addr: str
    message: Message


@dataclass(frozen=True, slots=True)
class PushPullReceived:
    message: Message


@dataclass(frozen=True, slots=True)
class StreamPingReceived:
    """A PING that arrived over a stream: the answer is the ``StreamAck`` action."""

    message: Message


@dataclass(frozen=True, slots=True)
class StreamAckReceived:
    """The ACK that answered one of our ``StreamPing`` actions."""

    message: Message


@dataclass(frozen=True, slots=True)
class LeaveRequested:
    pass


# ---- actions ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    addr: str
    message: Message


@dataclass(frozen=True, slots=True)
class PushPullWith:
    addr: str
    join: bool = False


@dataclass(frozen=True, slots=True)
class StreamPing:
    """Open a stream to ``addr``, send ``message`` (a PING), and feed the ACK read back
    as ``StreamAckReceived``; give up at ``deadline`` (the core's clock)."""

    addr: str
    message: Message
    deadline: float


@dataclass(frozen=True, slots=True)
class StreamAck:
    """Write ``message`` back on the stream whose PING was just handled."""

    message: Message


@dataclass(frozen=True, slots=True)
class MemberChanged:
    member: "Member"
    was: str | None


@dataclass(frozen=True, slots=True)
class WakeAt:
    at: float


@dataclass(frozen=True, slots=True)
class Member:
    """A member as this node sees it; ``since`` is on the caller's clock."""

    id: str
    gossip_addr: str
    http_addr: str
    state: str
    incarnation: int
    since: float


@dataclass(frozen=True, slots=True)
class CoreStatistics:
    probes_sent: int = 0
    indirect_probes_sent: int = 0
    acks_received: int = 0
    suspicions: int = 0
    deaths: int = 0
    refutations: int = 0
    stream_pings_sent: int = 0
    stream_acks_received: int = 0  # probes that only the stream ping saved
    health_score: int = 0  # Lifeguard local health: probe timers run (score + 1) times slower

