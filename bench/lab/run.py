"""Failure detection under real partitions in the lab (issue 13's Goals), measured.

    .venv/bin/python bench/lab/run.py [--cuts 6] [--gap 10] [--loss 0.2 --loss-seconds 150] [--md PATH]

On a lab of 3 Shoal hosts (``shoal lab``, distributed SeaweedFS, profile local), as root:

1. **cut -> dead**: ``--cuts`` times, one node (n1, n2, n3 in turn) is cut from both peers by
   iptables in its namespace (storage still reachable); the time from the cut until *both* other
   nodes list it ``dead`` (``/v1/cluster/members``, polled every 0.1 s), then the cut is healed
   and every node waits to see every node ``alive`` again, then ``--gap`` s more (0: cut again at
   once; Lifeguard's local health, raised by the failed probes of a cut, then slows the next
   detection).  Prints each figure and the median.
2. **loss without false deaths**: one host (n3) drops a random ``--loss`` share of every packet
   it sends and receives (iptables ``statistic --mode random``) for ``--loss-seconds``; every
   node's view is polled every 0.5 s; counted: views in which a live node is ``dead`` (the goal
   is 0) or ``suspect``.  ``--loss-seconds 0`` skips it.

The lab is always torn down (``finally``).  Writes Markdown to ``--md`` (default
bench/lab/results.md) and prints it.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cli.lab import Lab  # noqa: E402

DEAD_TIMEOUT = 30.0
ALIVE_TIMEOUT = 60.0


def members(http: httpx.Client, url: str) -> dict[str, str]:
    try:
        return {m["id"]: m["state"] for m in http.get(url + "/v1/cluster/members").json()["members"]}
    except (httpx.HTTPError, ValueError, KeyError):
        return {}


def wait_all_alive(http: httpx.Client, urls: dict[str, str], timeout: float = ALIVE_TIMEOUT) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if all(members(http, u).get(m) == "alive" for u in urls.values() for m in urls):
            return time.monotonic() - t0
        time.sleep(0.2)
    raise SystemExit(f"membership did not converge within {timeout:.0f} s")


def cut_to_dead(lab: Lab, http: httpx.Client, urls: dict[str, str], victim: str) -> float:
    others = [n for n in urls if n != victim]
    lab.cut(victim, others)
    t_cut = time.monotonic()
    try:
        seen: dict[str, float] = {}
        while len(seen) < len(others):
            for n in others:
                if n not in seen and members(http, urls[n]).get(victim) == "dead":
                    seen[n] = time.monotonic() - t_cut
            if time.monotonic() - t_cut > DEAD_TIMEOUT:
                raise SystemExit(f"{victim} not dead on {others} within {DEAD_TIMEOUT:.0f} s: {seen}")
            time.sleep(0.1)
        return max(seen.values())
    finally:
        lab.heal(victim)


def loss_run(lab: Lab, http: httpx.Client, urls: dict[str, str], host: str, share: float,
             seconds: float) -> dict[str, int]:
    lab.lossy(host, share)
    counts = {"views": 0, "dead": 0, "suspect": 0}
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for n, u in urls.items():
                view = members(http, u)
                if not view:
                    continue
                counts["views"] += 1
                counts["dead"] += sum(1 for m in urls if view.get(m) == "dead")
                counts["suspect"] += sum(1 for m in urls if view.get(m) == "suspect")
            time.sleep(0.5)
    finally:
        lab.heal(host)
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cuts", type=int, default=6)
    ap.add_argument("--gap", type=float, default=10.0, help="s between a heal and the next cut")
    ap.add_argument("--loss", type=float, default=0.2)
    ap.add_argument("--loss-seconds", type=float, default=150.0)
    ap.add_argument("--md", default=str(Path(__file__).with_name("results.md")))
    ap.add_argument("--dir", default="/tmp/shoal-bench-lab")
    args = ap.parse_args()
    name = "b" + "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3))
    lab = Lab.create(name, 3, f"10.213.{random.randint(100, 250)}.0/24", Path(args.dir) / name,
                     out=sys.stderr)
    try:
        lab.up()
        urls = {lab.plan.node_id(h): f"http://{h.addr}:8000" for h in lab.plan.node_hosts}
        with httpx.Client(timeout=2.0) as http:
            wait_all_alive(http, urls)
            dead: list[float] = []
            for i in range(args.cuts):
                victim = sorted(urls)[i % len(urls)]
                dead.append(cut_to_dead(lab, http, urls, victim))
                print(f"cut {victim}: dead on both peers after {dead[-1]:.2f} s", file=sys.stderr)
                wait_all_alive(http, urls)
                time.sleep(args.gap)
            counts = None
            if args.loss_seconds > 0:
                counts = loss_run(lab, http, urls, "n3", args.loss, args.loss_seconds)
                print(f"loss run: {counts}", file=sys.stderr)
                wait_all_alive(http, urls)
    finally:
        lab.down()
    load = os.getloadavg()
    md = "\n".join([
        "# Failure detection in the lab (bench/lab/run.py)", "",
        f"`{' '.join(['.venv/bin/python', 'bench/lab/run.py'] + sys.argv[1:])}` on "
        f"{platform.node()} ({os.cpu_count()} CPUs, load average at the end {load[0]:.1f}), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; lab of 3 hosts, profile local.", "",
        ]
        + ([f"**cut -> dead on both peers** ({args.cuts} cuts by iptables, storage reachable, "
            f"{args.gap:.0f} s after the previous heal converged): median "
            f"**{statistics.median(dead):.2f} s**; each: {', '.join(f'{d:.2f}' for d in dead)} s "
            f"(min {min(dead):.2f}, max {max(dead):.2f}).", ""] if dead else [])
        + ([f"**{args.loss:.0%} packet loss on n3** (iptables statistic, both directions) for "
            f"{args.loss_seconds:.0f} s: {counts['views']} views read (every node, every 0.5 s); live "
            f"nodes seen `dead`: **{counts['dead']}**; seen `suspect`: {counts['suspect']}.", ""]
           if counts else []))
    Path(args.md).write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
