"""``shoal lab up|down|cut|cap|heal``: the lab from the command line (see :mod:`cli.lab`).

``lab up`` prints progress on stderr and the lab's cluster file as the last line of stdout, so
``shoal --config "$(shoal lab up | tail -1)" status`` works from the machine's own namespace.
Exit 1 with ``error: ...`` for every expected failure (not root, tools missing, lab exists,
storage or a node not ready in time: then everything made is removed again).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import yaml

from ..errors import CliError
from .net import LabError
from .plan import PlanError
from .runtime import DEFAULT_SUBNET, Lab, sweep

__all__ = ["register", "cmd_lab"]


def register(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    p = cmd("lab", cmd_lab, "hosts as network namespaces on this machine: distributed SeaweedFS "
                            "and one node per host (root)")
    p.add_argument("action", choices=["up", "down", "cut", "cap", "heal"],
                   help="up: build and start; down: remove everything (also after a crash); "
                        "cut HOST --from A,B: drop packets between them (iptables); "
                        "cap HOST --rate KBIT: limit what HOST sends (tc tbf); heal HOST")
    p.add_argument("host", nargs="?", help="cut/heal: a host (h1, v2, s0) or a node id (n1)")
    p.add_argument("--from", dest="peers", metavar="A,B", help="cut: the hosts or nodes to cut from")
    p.add_argument("--one-way", choices=["in", "out"], help="cut: drop only packets coming in / going out")
    p.add_argument("--rate", type=int, metavar="KBIT", help="cap: kbit/s HOST may send")
    p.add_argument("--hosts", type=int, default=3, help="up: Shoal hosts (default 3)")
    p.add_argument("--name", default="0", help="the lab's name: 1-4 letters/digits (default 0); "
                                               "every namespace and link is slab<name>-*")
    p.add_argument("--subnet", default=DEFAULT_SUBNET, help=f"up: a private /24 (default {DEFAULT_SUBNET})")
    p.add_argument("--dir", help="the lab's folder (default ./.shoal-lab/<name>)")
    p.add_argument("--all", action="store_true", help="down: remove every lab's leftovers (slab*)")
    p.add_argument("--timeout", type=float, default=90.0, help="up: seconds for the nodes to be ready")
    p.add_argument("--with", dest="overrides", metavar="FILE",
                   help="up: a YAML mapping merged into the lab's cluster file (e.g. "
                        "'processing: {chunked: true}'; checked like any cluster.yml)")


def cmd_lab(args: argparse.Namespace) -> int:

    say = _say
    lab_dir = Path(args.dir or Path(".shoal-lab") / args.name)
    try:
        if args.action == "down" and args.all:
            removed = sweep(say=say)
            say("removed nothing: no lab leftovers" if not removed else "done")
            return 0
        if args.action == "up":
            lab = Lab.create(args.name, args.hosts, args.subnet, lab_dir, out=sys.stderr,
                             overrides=_overrides(args.overrides))
        else:  # the lab as `up` made it (subnet, hosts from its state file)
            lab = Lab.open(args.name, lab_dir, out=sys.stderr)
        if args.action == "up":
            path = lab.up(node_timeout=args.timeout)
            say(f"lab {args.name} is ready: " + ", ".join(
                f"{lab.plan.node_id(h)} http://{h.addr}:8000" for h in lab.plan.node_hosts))
            say(f"try: shoal --config {path} status; remove it with: shoal lab down --name {args.name}")
            print(path)
        elif args.action == "down":
            if not lab.down():
                say(f"lab {args.name}: nothing to remove")
        elif args.action == "cut":
            if not args.host or not args.peers:
                raise CliError("lab cut HOST --from A,B")
            lab.cut(args.host, args.peers.split(","), inbound=args.one_way != "out",
                    outbound=args.one_way != "in")
            say(f"cut {args.host} from {args.peers}" + (f" ({args.one_way} only)" if args.one_way else ""))
        elif args.action == "cap":
            if not args.host or not args.rate or args.rate <= 0:
                raise CliError("lab cap HOST --rate KBIT (a positive number)")
            lab.cap(args.host, args.rate)
            say(f"capped {args.host} at {args.rate} kbit/s")
        elif args.action == "heal":
            if not args.host:
                raise CliError("lab heal HOST")
            lab.heal(args.host)
            say(f"healed {args.host}")
    except (LabError, PlanError) as e:
        raise CliError(str(e)) from None
    return 0


def _overrides(path: str | None) -> dict:
    """The ``--with`` file's mapping ({} without one)."""
    if path is None:
        return {}
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise CliError(f"--with {path}: {e}") from None
    if not isinstance(doc, dict):
        raise CliError(f"--with {path}: expected a mapping of cluster.yml settings")
    return doc


def _say(text: str) -> None:
    print(text, file=sys.stderr)
