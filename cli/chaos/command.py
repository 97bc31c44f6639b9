"""``shoal chaos [run|check]``: the command line face of the chaos tool.

    shoal chaos --config cluster.yml --duration 120 --seed 7 --history out.jsonl [--profile long]
    shoal chaos check --config cluster.yml --history out.jsonl
    shoal chaos --config .shoal-lab/0/cluster.yml --duration 120     # a lab: real faults

A cluster file that ``shoal lab up`` wrote (a ``lab.json`` beside it) makes the nemesis inject
real faults in the lab's namespaces (cli.chaos.lab_faults) with the ``lab`` profile by default.

Both print one verdict with the figures and exit 0 (no anomaly) or 1 (anomalies), 2 on a
run that could not start.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from .checker import format_report
from .nemesis import PROFILES
from .workload import WorkloadParams

__all__ = ["register"]


def register(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``chaos`` to the ``shoal`` parser through its ``cmd(name, func, help)`` helper."""
    p = cmd("chaos", cmd_chaos, "kill, pause, partition nodes and storage under load; check every invariant")
    p.add_argument("action", nargs="?", choices=["run", "check"], default="run",
                   help="run (default): workload + faults, then check; check: only the checker")
    p.add_argument("--duration", type=float, default=120.0, help="seconds of workload and faults")
    p.add_argument("--seed", type=int, default=1, help="seeds the fault schedule and the workload")
    p.add_argument("--history", default="chaos-history.jsonl", help="JSON-lines history file")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                   help="fault rates: short (tests) or long (kill every 20-40 s, storage outages 10-30 s); "
                        "against a lab: lab (the default there: a network fault every 5-9 s) or lab-long")
    p.add_argument("--threads", type=int, default=3, help="workload client threads")
    p.add_argument("--max-uploads", type=int, default=200)
    p.add_argument("--settle", type=float, default=120.0,
                   help="bound (s) after the last fault for every video to be ready or failed")
    p.add_argument("--gc", type=float, default=90.0, help="bound (s) for garbage collection after settling")


def cmd_chaos(args: argparse.Namespace) -> int:
    from ..launcher import Launcher
    from .lab_faults import lab_of
    from .runner import check_history, run_chaos

    config = Path(args.config or "cluster.yml")
    launcher = Launcher(config, out=sys.stderr)
    lab = lab_of(config)  # the lab's cluster file: real network and storage-server faults
    profile = args.profile or ("lab" if lab is not None else "short")
    if args.action == "check":
        report = check_history(args.history, launcher.cfg, launcher.existing_secrets(),
                               settle_bound=args.settle, gc_bound=0.0)
    else:
        params = WorkloadParams(threads=args.threads, max_uploads=args.max_uploads)
        report = run_chaos(launcher, duration=args.duration, seed=args.seed, history_path=args.history,
                           profile=profile, params=params, settle_bound=args.settle, gc_bound=args.gc,
                           lab=lab, say=lambda s: print(s, file=sys.stderr, flush=True))
    if getattr(args, "json", False):
        print(json.dumps({"ok": report.ok, "figures": report.figures,
                          "anomalies": [a.as_dict() for a in report.anomalies]}, indent=2))
    else:
        print(format_report(report))
    return 0 if report.ok else 1
