"""Membership's own configuration: the SWIM timers and the gossip limits, with their defaults.

``MembershipConfig()`` is the default (memberlist's ``DefaultLANConfig`` is the model for every
timer it shares); ``MembershipConfig().local()`` is the profile for tests and demos on one
machine, written as changes to the default (as memberlist's ``DefaultLocalConfig``).  The node
reads it from the ``membership:`` section of ``cluster.yml``; this package imports nothing from
the node.

Derived values (formulas, with the function that computes each):

* min suspicion timeout = ``suspicion_mult * max(1, log10 N) * probe_interval``
  (``suspicion.suspicion_timeout``); max = ``suspicion_max_mult * min``.
* piggyback retransmits = ``retransmit_mult * ceil(log10(N + 1))``
  (``dissemination.retransmit_limit``).
* largest push-pull frame = ``284 + 2 + 664 * max_members + 32`` bytes
  (``codec.push_pull_limit``: the envelope, the largest update row, the MAC): 664 KiB for the
  default 1,024 members, so at most ``max_streams * frame_limit`` bytes of stream bodies are
  buffered at once (~10.4 MiB).

It is a frozen msgspec Struct that refuses unknown fields, so whoever decodes the section
strictly (the node, ``msgspec.convert(..., strict=True)``) gets types checked and misspelt keys
refused; the ranges are checked here, on every construction.

Errors: ``ValueError`` from the constructor (and ``msgspec.structs.replace``) when a value is out
of range, written ``membership.<field>: <why>``.
"""

from __future__ import annotations

import msgspec
from msgspec.structs import replace


class MembershipConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    probe_interval: float = 1.0  # SWIM: seconds between probes (memberlist LAN: 1 s)
    probe_timeout: float = 0.5  # SWIM: wait for a direct ack (memberlist LAN: 500 ms)
    indirect_probes: int = 3  # SWIM: members asked to probe indirectly (memberlist LAN: 3)
    suspicion_mult: float = 4.0  # min suspicion timeout = mult * max(1, log10(N)) * probe_interval
    suspicion_max_mult: float = 6.0  # max suspicion timeout = this * min timeout
    retransmit_mult: float = 4.0  # piggyback retransmits = mult * ceil(log10(N+1))
    push_pull_interval: float = 30.0  # anti-entropy full-state exchange period (memberlist LAN: 30 s)
    packet_window: float = 120.0  # a packet's sent-at must be within this many seconds of our clock
    replay_memory: int = 32768  # packets (and stream headers) remembered to refuse replays; oldest forgotten first
    max_members: int = 1024  # largest member table a push-pull frame may carry (sets the frame limit)
    max_streams: int = 16  # inbound gossip TCP connections at once (memberlist: 128 push-pulls)
    stream_timeout: float = 5.0  # seconds for a whole TCP exchange (read deadline; memberlist LAN: 10 s)
    header_timeout: float = 1.0  # seconds a new TCP connection has to send its authenticated header

    def __post_init__(self) -> None:
        for name in ("probe_interval", "probe_timeout", "push_pull_interval", "packet_window",
                     "stream_timeout", "header_timeout"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise ValueError(f"membership.{name}: must be a positive number of seconds, "
                                 f"not {v!r}")
        for name in ("indirect_probes", "replay_memory", "max_members", "max_streams"):
            v, least = getattr(self, name), 0 if name == "indirect_probes" else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < least:
                raise ValueError(f"membership.{name}: must be a whole number >= {least}, not {v!r}")
        for name in ("suspicion_mult", "suspicion_max_mult", "retransmit_mult"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"membership.{name}: must be a number >= 1, not {v!r}")
        if self.probe_timeout >= self.probe_interval:
            raise ValueError("membership.probe_timeout: must be shorter than probe_interval")

    def local(self) -> "MembershipConfig":
        """Fast timers for tests and demos on one machine (loopback latency)."""
        return replace(self, probe_interval=0.3, probe_timeout=0.15, push_pull_interval=5.0,
                       stream_timeout=1.5)
