"""Gossip membership: SWIM with Lifeguard suspicion and local health, authenticated UDP,
TCP fallback pings, push-pull anti-entropy.

Public face (import only these from outside the package):

* ``Membership`` - the runtime service: ``serve()``, ``members()``, ``alive_ids()``,
  ``joined()``, ``add_listener()``, ``wait_changed()``, ``leave()``, ``set_blocked()``,
  ``statistics()``.
* ``MembershipConfig`` - its timers and limits, with their defaults and ``local()`` profile.
* ``Log`` - the logging seam (``log(level, event, **fields)``); ``stdlib_log`` is the default.
* ``Member``, ``MembershipStatistics`` - what it reports.
* ``ALIVE``, ``SUSPECT``, ``DEAD``, ``LEFT`` - member states.
* ``MembershipError`` - base of the errors ``serve()`` raises (``BindError``).

Inside: the pure SWIM machine in ``state.py`` (probe cycle, gossip, push-pull),
``table.py`` (the member table and its fact rules) and ``events.py`` (its events and
actions); ``suspicion.py``, ``dissemination.py`` and ``awareness.py`` (formulas),
``codec.py`` (wire format, HMAC), ``replay.py`` (the replay rule), ``frames.py`` (TCP
frame headers), ``streams.py`` (bounded inbound TCP), ``sim.py`` (deterministic simulator),
``runtime.py`` (trio UDP + TCP), ``transport.py`` (the datagram interface), ``config.py``,
``log.py``.

Imports nothing from the node (or any other package of this repository).
"""

from .config import MembershipConfig
from .events import Member
from .log import Log, stdlib_log
from .messages import ALIVE, DEAD, LEFT, SUSPECT
from .runtime import BindError, Membership, MembershipError, MembershipStatistics

__all__ = ["ALIVE", "DEAD", "LEFT", "SUSPECT", "BindError", "Log", "Member", "Membership",
           "MembershipConfig", "MembershipError", "MembershipStatistics", "stdlib_log"]
