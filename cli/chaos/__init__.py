"""``shoal chaos``: a bounded workload under a seeded nemesis, and the checker of every invariant.

Public face:
- :func:`run_chaos` (one run against a :class:`cli.Launcher`'s cluster, or a lab's with real
  faults: :class:`LabFaults`, :func:`lab_of`) and :func:`check_history`;
- the pure checker: :func:`check` over a history and a :class:`Snapshot`, giving a :class:`Report`
  of :class:`Anomaly`; :func:`read_snapshot` fills a snapshot from any ``storage.ObjectStore``;
- the schedule: :func:`plan_faults`, :class:`FaultProfile`, ``PROFILES``;
- :func:`register` adds the ``chaos`` subcommand to the ``shoal`` parser.
"""

from .checker import ANOMALY_KINDS, Anomaly, Report, Snapshot, acked_uploads, check, format_report
from .command import register
from .history import History, read_history
from .nemesis import PROFILES, Fault, FaultProfile, plan_faults
from .lab_faults import LabFaults, lab_of
from .runner import check_history, run_chaos, settle
from .snapshot import id_time, read_snapshot
from .workload import WorkloadParams

__all__ = ["ANOMALY_KINDS", "Anomaly", "Report", "Snapshot", "acked_uploads", "check", "format_report",
           "register", "History", "read_history", "PROFILES", "Fault", "FaultProfile", "plan_faults",
           "check_history", "run_chaos", "settle", "id_time", "read_snapshot", "WorkloadParams",
           "LabFaults", "lab_of"]
