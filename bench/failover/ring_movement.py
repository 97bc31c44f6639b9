"""Simulated ring movement and rebuild cost (the pure half of bench/failover).

    .venv/bin/python bench/failover/ring_movement.py                 # 1,000 nodes, 100k videos
    .venv/bin/python bench/failover/ring_movement.py --replicas 40,80,160 --samples 20

For a ring of N nodes (weight 1) and V video ids it measures:
- leave: for ``--samples`` seeded-random leavers, plus the node that owns the most videos, the
  fraction of videos whose owner changes, checked to be exactly the leaver's videos; and, for
  every one of the N possible leavers, the fraction it owns (what its leave would move);
- join: for ``--samples`` new node ids, the fraction of videos whose owner changes, checked to
  all move to the newcomer;
- balance: videos per node (max, min, stdev relative to the mean) and the hash-space share;
- rebuild time at N = 5, 100, 1000: cold (no memoised points), warm (after one join: only
  the newcomer is hashed), and stock ``hashring.HashRing`` for comparison; median CPU time
  of ``--runs`` runs;
- lookup cost: ``owner``, ``preference(n=3)`` and full ``preference`` per video.

Goal (issue 4): a single join or leave moves at most 1.5/N of the videos.
Prints Markdown; ``--json PATH`` also writes the raw figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hashring import HashRing  # noqa: E402

from ring import Ring, vnode_points  # noqa: E402


def node_ids(n: int) -> list[str]:
    return [f"node-{i:04d}" for i in range(n)]


def median_time(fn, runs: int) -> float:
    """Median CPU seconds of ``fn()`` (process time: steady on a busy shared machine)."""
    times = []
    for _ in range(runs):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def owners(ring: Ring, videos: list[str]) -> list[str | None]:
    return [ring.owner(v) for v in videos]


def movement(n: int, videos: list[str], replicas: int, samples: int, rng: random.Random) -> dict:
    ids = node_ids(n)
    full = Ring(dict.fromkeys(ids, 1), replicas=replicas)
    before = owners(full, videos)
    per_node = Counter(before)
    loads = [per_node.get(i, 0) / len(videos) for i in ids]
    shares = full.shares()

    heaviest = max(ids, key=lambda i: per_node.get(i, 0))
    leavers = rng.sample(ids, samples - 1) + [heaviest]
    leave_fracs = []
    for leaver in leavers:
        after = owners(Ring({i: 1 for i in ids if i != leaver}, replicas=replicas), videos)
        moved = [k for k, (b, a) in enumerate(zip(before, after)) if b != a]
        assert all(before[k] == leaver for k in moved), "a survivor's video moved"
        leave_fracs.append(len(moved) / len(videos))

    join_fracs = []
    for j in range(samples):
        joiner = f"joiner-{rng.randrange(10**9):09d}-{j}"
        after = owners(Ring({**dict.fromkeys(ids, 1), joiner: 1}, replicas=replicas), videos)
        moved = [k for k, (b, a) in enumerate(zip(before, after)) if b != a]
        assert all(after[k] == joiner for k in moved), "a video moved to a survivor"
        join_fracs.append(len(moved) / len(videos))

    goal = 1.5 / n
    return {
        "nodes": n, "videos": len(videos), "replicas": replicas,
        "points_per_node": full.vnodes // n,
        "goal_fraction": goal,
        "leave_sampled": {"n": len(leave_fracs), "mean": statistics.mean(leave_fracs),
                          "max": max(leave_fracs)},
        "leave_all_nodes": {"mean": statistics.mean(loads), "p99": sorted(loads)[int(0.99 * n)],
                            "max": max(loads),
                            "over_goal": sum(1 for x in loads if x > goal)},
        "join_sampled": {"n": len(join_fracs), "mean": statistics.mean(join_fracs),
                         "max": max(join_fracs),
                         "over_goal": sum(1 for x in join_fracs if x > 1.5 / (n + 1))},
        "videos_per_node": {"max_rel": max(loads) * n, "min_rel": min(loads) * n,
                            "stdev_rel": statistics.pstdev(loads) * n},
        "share": {"max_rel": max(shares.values()) * n, "min_rel": min(shares.values()) * n,
                  "stdev_rel": statistics.pstdev(shares.values()) * n},
    }


def rebuild_times(n: int, replicas: int, runs: int) -> dict:
    ids = node_ids(n)
    members = dict.fromkeys(ids, 1)

    def cold() -> None:
        vnode_points.cache_clear()
        Ring(members, replicas=replicas)

    cold_s = median_time(cold, runs)
    Ring(members, replicas=replicas)  # memoise everyone
    joins = iter(range(10**6))
    warm_s = median_time(lambda: Ring({**members, f"joiner-{next(joins)}": 1},
                                      replicas=replicas), runs)
    stock_s = median_time(lambda: HashRing(ids), runs) if replicas == 40 else None
    return {"nodes": n, "replicas": replicas, "cold_ms": cold_s * 1e3, "warm_ms": warm_s * 1e3,
            "stock_hashring_ms": None if stock_s is None else stock_s * 1e3}


def lookup_times(n: int, replicas: int, videos: list[str]) -> dict:
    ring = Ring(dict.fromkeys(node_ids(n), 1), replicas=replicas)
    sample = videos[:5000]
    t_owner = median_time(lambda: [ring.owner(v) for v in sample], 3) / len(sample)
    t_pref3 = median_time(lambda: [ring.preference(v, 3) for v in sample], 3) / len(sample)
    few = sample[:200]
    t_full = median_time(lambda: [ring.preference(v) for v in few], 1) / len(few)
    return {"nodes": n, "replicas": replicas, "owner_us": t_owner * 1e6,
            "preference3_us": t_pref3 * 1e6, "preference_all_ms": t_full * 1e3}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=20, help="leaves and joins measured")
    parser.add_argument("--replicas", default="40,80,160",
                        help="comma-separated md5 digests per unit weight (3 points each)")
    parser.add_argument("--rebuild-sizes", default="5,100,1000")
    parser.add_argument("--runs", type=int, default=5, help="timing runs (median)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--parts", default="movement,rebuild,lookup",
                        help="which measurements to run (comma-separated)")
    parser.add_argument("--json", type=Path, help="also write raw figures here")
    args = parser.parse_args(argv)

    replicas_list = [int(r) for r in args.replicas.split(",")]
    sizes = [int(s) for s in args.rebuild_sizes.split(",")]
    rng = random.Random(args.seed)
    videos = [f"{rng.getrandbits(128):032x}" for _ in range(args.videos)]
    print(f"# ring movement: {args.nodes} nodes, {args.videos} videos, seed {args.seed}, "
          f"python {platform.python_version()}\n")

    parts = set(args.parts.split(","))
    moves = [movement(args.nodes, videos, r, args.samples, random.Random(args.seed))
             for r in replicas_list] if "movement" in parts else []
    n = args.nodes
    if moves:
        print(f"Moved fraction x N (goal <= 1.5; N = {n}):\n")
        print("| replicas (points/node) | leave: sampled mean / max | leave: all N nodes "
              "mean / p99 / max (over goal) | join: sampled mean / max (over goal) |")
        print("|---|---|---|---|")
        for m in moves:
            ls, la, js = m["leave_sampled"], m["leave_all_nodes"], m["join_sampled"]
            print(f"| {m['replicas']} ({m['points_per_node']}) | {ls['mean'] * n:.2f} / "
                  f"{ls['max'] * n:.2f} | {la['mean'] * n:.2f} / {la['p99'] * n:.2f} / "
                  f"{la['max'] * n:.2f} ({la['over_goal']}) | {js['mean'] * (n + 1):.2f} / "
                  f"{js['max'] * (n + 1):.2f} ({js['over_goal']}) |")
        print("\nBalance (relative to the mean; videos per node includes the sampling noise of "
              f"{args.videos // n} videos per node):\n")
        print("| replicas | videos/node max / min / stdev | hash share max / min / stdev |")
        print("|---|---|---|")
        for m in moves:
            v, s = m["videos_per_node"], m["share"]
            print(f"| {m['replicas']} | {v['max_rel']:.2f} / {v['min_rel']:.2f} / "
                  f"{v['stdev_rel']:.3f} | {s['max_rel']:.3f} / {s['min_rel']:.3f} / "
                  f"{s['stdev_rel']:.3f} |")

    rebuilds = [rebuild_times(size, r, args.runs) for r in replicas_list for size in sizes
                if "rebuild" in parts]
    if rebuilds:
        print("\nRebuild time, median CPU ms (cold: every node hashed; warm: one join, others "
              "memoised):\n")
        print("| replicas | N | cold | warm | stock HashRing |")
        print("|---|---|---|---|---|")
        for b in rebuilds:
            stock = "-" if b["stock_hashring_ms"] is None else f"{b['stock_hashring_ms']:.2f}"
            print(f"| {b['replicas']} | {b['nodes']} | {b['cold_ms']:.2f} | {b['warm_ms']:.2f} | "
                  f"{stock} |")

    lookups = [lookup_times(size, r, videos) for r in replicas_list[:1] for size in sizes
               if "lookup" in parts]
    if lookups:
        print("\nLookup cost per video, median CPU time:\n")
        print("| replicas | N | owner (us) | preference(n=3) (us) | full preference (ms) |")
        print("|---|---|---|---|---|")
        for lk in lookups:
            print(f"| {lk['replicas']} | {lk['nodes']} | {lk['owner_us']:.1f} | "
                  f"{lk['preference3_us']:.1f} | {lk['preference_all_ms']:.2f} |")

    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "movement": moves, "rebuild": rebuilds,
                                         "lookup": lookups}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
