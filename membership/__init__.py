"""Gossip membership: SWIM with Lifeguard suspicion and local health, authenticated UDP,
TCP fallback pings, push-pull anti-entropy.

Public face (import only these from outside the package):

* ``Membership`` - the runtime service: ``serve()``, ``members()``, ``alive_ids()``,
  ``joined()``, ``add_listener()``, ``wait_changed()``, ``leave()``, ``set_blocked()``,
  ``statistics()``.
* ``Member``, ``MembershipStatistics`` - what it reports.
* ``ALIVE``, ``SUSPECT``, ``DEAD``, ``LEFT`` - member states.
* ``MembershipError`` - base of the errors ``serve()`` raises (``BindError``).

Inside: the pure SWIM machine in ``state.py`` (probe cycle, gossip, push-pull),
``table.py`` (the member table and its fact rules) and ``events.py`` (its events and
actions); ``suspicion.py``, ``dissemination.py`` and ``awareness.py`` (formulas),
``codec.py`` (wire format, HMAC, replay), ``sim.py`` (deterministic simulator),
``runtime.py`` (trio UDP + TCP).
"""

from .events import Member
from .messages import ALIVE, DEAD, LEFT, SUSPECT
from .runtime import BindError, Membership, MembershipError, MembershipStatistics

__all__ = ["ALIVE", "DEAD", "LEFT", "SUSPECT", "BindError", "Member", "Membership",
           "MembershipError", "MembershipStatistics"]
