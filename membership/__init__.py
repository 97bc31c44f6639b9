"""Gossip membership: SWIM with Lifeguard suspicion and local health, authenticated UDP,
TCP fallback pings, push-pull anti-entropy.

Public face (import only these from outside the package):

* ``Membership`` - the runtime service: ``serve()``, ``members()``, ``alive_ids()``,
  ``joined()``, ``add_listener()``, ``wait_changed()``, ``leave()``, ``set_blocked()``,
  ``statistics()``.
* ``Member``, ``MembershipStatistics`` - what it reports.
* ``ALIVE``, ``SUSPECT``, ``DEAD``, ``LEFT`` - member states.
* ``MembershipError`` - base of the errors ``serve()`` raises (``BindError``).

Inside: ``state.py`` (the pure SWIM machine), ``suspicion.py``,
``dissemination.py`` and ``awareness.py`` (formulas), ``codec.py`` (wire format, HMAC, replay),
``sim.py`` (deterministic simulator), ``runtime.py`` (trio UDP + TCP).
"""

from .messages import ALIVE, DEAD, LEFT, SUSPECT
from .runtime import BindError, Membership, MembershipError, MembershipStatistics
from .state import Member

__all__ = ["ALIVE", "DEAD", "LEFT", "SUSPECT", "BindError", "Member", "Membership",
           "MembershipError", "MembershipStatistics"]
