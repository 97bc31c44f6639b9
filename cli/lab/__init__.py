"""``shoal lab``: several hosts on one machine, as Linux network namespaces on one bridge.

Public face:
- :class:`Lab` (``Lab.create(name, hosts, subnet, dir)``, ``up()``, ``down()``, ``cut()``,
  ``heal()``, ``signal_process()``) builds a distributed SeaweedFS (master, three volume servers with
  replication 001, filer, S3 gateway) and one Shoal node per host namespace, and removes it all;
- :func:`sweep` removes every lab's leftovers by name prefix; :func:`leftovers` says what is left;
- :func:`plan_lab` / :class:`LabPlan`: the pure plan (names, addresses, commands);
- :class:`LabError`; :func:`register` adds ``lab`` to the ``shoal`` parser.

Imports: ``cli`` (the launcher, for secrets, pid files and readiness), ``node.config``,
``storage`` (where ``weed`` is); runs ``ip`` and ``iptables`` as root.  Needs no network off the
machine and makes none: namespaces have no default route.
"""

from .command import register
from .net import LabError
from .plan import LabPlan, PlanError, plan_lab, prefix
from .runtime import Lab, leftovers, sweep

__all__ = ["Lab", "LabError", "LabPlan", "PlanError", "leftovers", "plan_lab", "prefix",
           "register", "sweep"]
