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

from dataclasses import make_dataclass
from typing import Any

from .messages import Message


def _value(name: str, fields: list[tuple[str, Any] | tuple[str, Any, Any]], doc: str | None = None) -> type:
    """The class ``@dataclass(frozen=True, slots=True) class <name>: <fields>`` (``doc`` its
    docstring) of this module: each field is ``(name, type)`` or ``(name, type, default)``."""
    namespace = {"__module__": __name__} | ({"__doc__": doc} if doc else {})
    return make_dataclass(name, fields, namespace=namespace, frozen=True, slots=True)


# ---- events -------------------------------------------------------------------------------
Tick = _value("Tick", [])
Received = _value("Received", [("addr", str), ("message", Message)])
PushPullReceived = _value("PushPullReceived", [("message", Message)])
StreamPingReceived = _value("StreamPingReceived", [("message", Message)],
                            "A PING that arrived over a stream: the answer is the ``StreamAck`` action.")
StreamAckReceived = _value("StreamAckReceived", [("message", Message)],
                           "The ACK that answered one of our ``StreamPing`` actions.")
LeaveRequested = _value("LeaveRequested", [])

# ---- actions ------------------------------------------------------------------------------
Send = _value("Send", [("addr", str), ("message", Message)])
PushPullWith = _value("PushPullWith", [("addr", str), ("join", bool, False)])
StreamPing = _value("StreamPing", [("addr", str), ("message", Message), ("deadline", float)],
                    """Open a stream to ``addr``, send ``message`` (a PING), and feed the ACK read back
    as ``StreamAckReceived``; give up at ``deadline`` (the core's clock).""")
StreamAck = _value("StreamAck", [("message", Message)],
                   "Write ``message`` back on the stream whose PING was just handled.")
MemberChanged = _value("MemberChanged", [("member", "Member"), ("was", "str | None")])
WakeAt = _value("WakeAt", [("at", float)])

Member = _value("Member", [("id", str), ("gossip_addr", str), ("http_addr", str), ("state", str),
                           ("incarnation", int), ("since", float)],
                "A member as this node sees it; ``since`` is on the caller's clock.")
CoreStatistics = _value("CoreStatistics", [(counter, int, 0) for counter in (
    "probes_sent", "indirect_probes_sent", "acks_received", "suspicions", "deaths", "refutations",
    "stream_pings_sent",
    "stream_acks_received",  # probes that only the stream ping saved
    "health_score",  # Lifeguard local health: probe timers run (score + 1) times slower
)])
