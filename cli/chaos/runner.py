"""One chaos run: workload + nemesis for ``duration``, heal, settle, wait for GC, check.

    report = run_chaos(launcher, duration=120, seed=7, history_path="out.jsonl")
    report = check_history("out.jsonl", cfg, secrets)          # the checker alone, on a past run

Phases (each a ``phase`` line in the history):

1. ``run``: workload threads and the nemesis for ``duration`` s (every planned fault heals before);
2. ``faults_end``: every fault is undone (nodes restarted or resumed, storage up, gossip unblocked);
   a ``members`` line: how long until every node saw every node alive again;
3. ``settled``: every acknowledged video is read until terminal, at most ``settle_bound`` s;
4. ``gc_done``: storage is re-read until no orphan remains, at most ``gc_bound`` s;
5. the checker over the history and the last snapshot.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import httpx
import trio
import trio_asyncio

from .checker import Report, acked_uploads, check
from .lab_faults import LabFaults
from .history import History, read_history
from .media_pool import MediaPool
from .nemesis import PROFILES, FaultProfile, LauncherFaults, Nemesis, plan_faults
from .snapshot import open_cluster_store, read_snapshot
from .workload import Workload, WorkloadParams

__all__ = ["run_chaos", "check_history", "settle", "converge"]

GARBAGE = ("orphan_multipart", "orphan_attempt")


def run_chaos(launcher: Any, *, duration: float, seed: int, history_path: str | Path,
              profile: FaultProfile | str = "short", params: WorkloadParams = WorkloadParams(),
              settle_bound: float = 120.0, gc_bound: float = 90.0, lab: Any = None,
              say: Callable[[str], None] = print) -> Report:
    """``lab``: the :class:`cli.lab.Lab` the cluster runs in (real network and storage-server
    faults, cli.chaos.lab_faults); None: a local cluster of the launcher (simulated partitions)."""
    cfg = launcher.cfg
    secrets = launcher.existing_secrets()
    token = secrets.token if secrets else cfg.token()
    profile = PROFILES[profile] if isinstance(profile, str) else profile
    launcher.wait_ready(cfg.node_ids, timeout=90.0)
    pool = MediaPool(cfg.state_dir / "chaos" / "media")
    faults: Any = LauncherFaults(launcher, token) if lab is None else LabFaults(lab, cfg, token)
    history = History(history_path)
    prefix = f"chaos-{seed}-{random.Random().getrandbits(32):08x}"
    t0 = time.time()
    schedule = plan_faults(seed, cfg.node_ids, duration, profile, lab=lab is not None)
    history.write("run", t0=t0, seed=seed, duration=duration, nodes=cfg.node_ids, name_prefix=prefix,
                  profile=asdict(profile), workload={k: v for k, v in asdict(params).items()},
                  faults_planned=len(schedule), settle_bound=settle_bound,
                  lab=lab.plan.name if lab is not None else None)
    planned = Counter(f.kind for f in schedule)
    say(f"chaos: seed {seed}, {duration:.0f} s, {len(schedule)} faults planned "
        f"({', '.join(f'{k} {n}' for k, n in sorted(planned.items()))})"
        f"{f' against lab {lab.plan.name}' if lab is not None else ''}, history {history_path}")
    stop_faults, stop_work = threading.Event(), threading.Event()
    workload = Workload(cfg, token, history, pool, seed=seed, name_prefix=prefix, params=params,
                        stop=stop_work)
    nemesis = Nemesis(faults, schedule, history, start=t0, stop=stop_faults)
    nem_thread = threading.Thread(target=nemesis.run, daemon=True, name="nemesis")
    try:
        workers = workload.start()
        nem_thread.start()
        end = t0 + duration
        while time.time() < end:
            time.sleep(min(5.0, max(0.0, end - time.time())))
            say(f"chaos: {time.time() - t0:.0f} s, {history.counts.get('upload', 0)} uploads, "
                f"{history.counts.get('fault', 0)} faults, {len(workload.known.ready)} seen ready")
        workload.stopped_at = time.time()
        stop_work.set()
        stop_faults.set()
        nem_thread.join(timeout=120.0)
        for w in workers:
            w.join(timeout=params.after_stop + 30.0)
        history.write("phase", name="workload_end")
    finally:
        stop_work.set()
        stop_faults.set()
        errors = faults.heal_all()
        history.write("phase", name="faults_end", errors=errors)
    last_fault = max(nemesis.last_fault_end, time.time())
    say(f"chaos: faults healed{' (' + '; '.join(errors) + ')' if errors else ''}; settling")
    views = converge(cfg, deadline=last_fault + settle_bound)
    history.write("members", t1=time.time(), seconds=round(time.time() - last_fault, 1), **views)
    hist = read_history(history_path)
    states = settle(cfg, list(acked_uploads(hist)), deadline=last_fault + settle_bound)
    history.write("phase", name="settled", seconds=round(time.time() - last_fault, 1),
                  states={s: sum(1 for v in states.values() if v == s) for s in set(states.values())})
    say(f"chaos: settled after {time.time() - last_fault:.1f} s; waiting for garbage collection")
    report = _check_with_gc(cfg, secrets, history_path, settle_bound=settle_bound, gc_bound=gc_bound)
    history.write("phase", name="gc_done")
    history.write("verdict", ok=report.ok, figures=report.figures,
                  anomalies=[a.as_dict() for a in report.anomalies])
    history.close()
    return report


def converge(cfg: Any, *, deadline: float, interval: float = 0.5) -> dict:
    """Wait until every node sees every node alive (membership healed after the faults).

    Returns ``{"converged": bool, "views": {node: {member: state}}}`` as last read.
    """
    views: dict[str, dict[str, str]] = {}
    with httpx.Client(timeout=2.0) as http:
        while True:
            for n in cfg.nodes:
                try:
                    data = http.get(n.url + "/v1/cluster/members").json()
                    views[n.id] = {m["id"]: m["state"] for m in data.get("members", [])}
                except (httpx.HTTPError, ValueError, KeyError, TypeError):
                    views[n.id] = {}
            ok = all(views[n].get(m) == "alive" for n in cfg.node_ids for m in cfg.node_ids)
            if ok or time.time() >= deadline:
                return {"converged": ok, "views": views}
            time.sleep(interval)


def settle(cfg: Any, vids: list[str], *, deadline: float, interval: float = 0.5) -> dict[str, str]:
    """Read each video (any node that answers) until it is terminal or the deadline passes."""
    states: dict[str, str] = {v: "unknown" for v in vids}
    open_ = set(vids)
    urls = [n.url for n in cfg.nodes]
    with httpx.Client(timeout=5.0) as http:
        while open_ and time.time() < deadline:
            for vid in list(open_):
                for url in urls:
                    try:
                        r = http.get(f"{url}/v1/videos/{vid}")
                    except httpx.HTTPError:
                        continue
                    if r.status_code == 200:
                        states[vid] = r.json().get("state", "unknown")
                        if states[vid] in ("ready", "failed", "deleted"):
                            open_.discard(vid)
                        break
            if open_:
                time.sleep(interval)
    return states


def _check_with_gc(cfg: Any, secrets: Any, history_path: str | Path, *, settle_bound: float,
                   gc_bound: float) -> Report:
    history = read_history(history_path)

    async def main() -> Report:
        async with trio_asyncio.open_loop():
            async with open_cluster_store(cfg, secrets) as store:
                deadline = trio.current_time() + gc_bound
                while True:
                    snap = await read_snapshot(store, history)
                    report = check(history, snap, settle_bound=settle_bound)
                    garbage = [a for a in report.anomalies if a.kind in GARBAGE]
                    if not garbage or trio.current_time() >= deadline:
                        return report
                    await trio.sleep(2.0)

    return trio.run(main)


def check_history(history_path: str | Path, cfg: Any, secrets: Any, *, settle_bound: float = 120.0,
                  gc_bound: float = 0.0) -> Report:
    """The checker on a finished run's history, against the cluster's storage as it is now."""
    return _check_with_gc(cfg, secrets, history_path, settle_bound=settle_bound, gc_bound=gc_bound)
