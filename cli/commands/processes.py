"""``shoal up | down | kill | stop | restart | demo``: the commands that start, stop or signal the
processes of a cluster.yml on this machine, through :class:`cli.launcher.Launcher`.

Invariant: each needs the cluster.yml (:func:`cli.connect.launcher`); with URLs only,
``cli.main`` refuses them before they run (``PROCESS_COMMANDS``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from node.config import ConfigError

from ..client import Client
from ..connect import config_path, launcher, say, token_for
from ..errors import CliError
from ..health import format_status
from ..launcher import Launcher
from ..progress import Progress
from ..tables import human_bytes
from .videos import WAIT_FAILED, WAIT_TIMEOUT, format_video, wait_for

__all__ = ["register"]


def register(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the process commands through the ``shoal`` parser's ``cmd(name, func, help)`` helper."""
    p = cmd("up", cmd_up, "start the cluster of cluster.yml in the background")
    p.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for readiness")
    p.add_argument("--no-wait", action="store_true", help="return without waiting for /readyz")
    cmd("down", cmd_down, "stop every node, then the embedded storage")
    p = cmd("kill", cmd_kill, "SIGKILL a node (a crash)")
    p.add_argument("target", metavar="node")
    p = cmd("stop", cmd_stop, "stop one node gracefully (SIGTERM: it leaves the cluster)")
    p.add_argument("target", metavar="node")
    p = cmd("restart", cmd_restart, "stop a node if it runs and start it again")
    p.add_argument("target", metavar="node")
    p.add_argument("--timeout", type=float, default=90.0)
    p = cmd("demo", cmd_demo, "start the cluster, upload a generated sample, wait, print the URL")
    p.add_argument("--file", help="upload this file instead of the generated sample")
    p.add_argument("--timeout", type=float, default=600.0)
    p = cmd("node", cmd_node, "run exactly one node of cluster.yml in the foreground "
            "(systemd, a container, one host of many): `shoal node run --node ID`")
    p.add_argument("action", choices=["run"], help="run: the node in this process until SIGTERM")


def cmd_up(args: argparse.Namespace) -> int:
    launch = launcher(args, out=sys.stderr)
    started = launch.up(wait=not args.no_wait, timeout=args.timeout)
    if not started:
        say("already running")
    if args.no_wait:
        return 0
    say(f"cluster {launch.cfg.cluster} is ready: " + ", ".join(n.url for n in launch.cfg.nodes))
    print(format_status(launch.status()))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stopped = launcher(args, out=sys.stderr).down()
    say("stopped " + ", ".join(stopped) if stopped else "nothing was running")
    return 0


def _end_node(args: argparse.Namespace, how: str) -> int:
    """`shoal kill` (SIGKILL) and `shoal stop` (SIGTERM, graceful leave) of one node."""
    launch = launcher(args) if how == "kill" else launcher(args, out=sys.stderr)
    _known_node(launch, args.target)
    if (launch.kill if how == "kill" else launch.stop)(args.target):
        say(f"{'killed' if how == 'kill' else 'stopped'} {args.target}")
        return 0
    raise CliError(f"node {args.target} is not running (no live process from `shoal up`)")


def cmd_kill(args: argparse.Namespace) -> int:
    return _end_node(args, "kill")


def cmd_stop(args: argparse.Namespace) -> int:
    return _end_node(args, "stop")


def cmd_restart(args: argparse.Namespace) -> int:
    launch = launcher(args, out=sys.stderr)
    _known_node(launch, args.target)
    launch.restart(args.target, timeout=args.timeout)
    say(f"{args.target} is ready at {launch.cfg.node(args.target).url}")
    return 0


def _known_node(launch: Launcher, node_id: str) -> None:
    try:
        launch.cfg.node(node_id)
    except ConfigError as e:
        raise CliError(str(e)) from None


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import make_sample

    launch = launcher(args, out=sys.stderr)
    t0 = time.monotonic()
    launch.up(wait=True)
    say(f"cluster ready in {time.monotonic() - t0:.1f} s: " + ", ".join(launch.cfg.node_ids))
    if args.file:
        sample = Path(args.file)
    else:
        # 720p so the whole default ladder (360p, 480p, 720p) is made: renditions never upscale.
        sample = make_sample(launch.state_dir / "demo" / "sample-720p.mp4", size="1280x720")
        say(f"sample video: {sample} ({human_bytes(sample.stat().st_size)}, 10 s 1280x720)")
    with Client(launch.cfg, node=args.node, token=token_for(launch)) as c:
        progress = Progress(sample.stat().st_size, label="upload ")
        try:
            rec = c.upload(sample, progress=progress)
        finally:
            progress.finish()
        t1 = time.monotonic()
        code, rec = wait_for(c, rec["id"], timeout=args.timeout)
        base = c.nodes()[0].url
    if code == WAIT_FAILED:
        raise CliError(f"video {rec.get('id')} failed: {rec.get('error')}")
    if code == WAIT_TIMEOUT:
        raise CliError(f"video {rec.get('id')} not ready after {args.timeout:.0f} s "
                       f"(state {rec.get('state')}); see `shoal status` and {launch.state_dir}/logs")
    say(f"processed in {time.monotonic() - t1:.1f} s")
    print(format_video(rec, base))
    hls = rec.get("playback", {}).get("hls") or f"/v1/videos/{rec['id']}/hls/master.m3u8"
    print(f"\nplayback URL: {base}{hls}")
    say(f"every node serves it: `shoal play {rec['id']}`; stop the cluster with `shoal down`")
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    """`shoal node run`: this process becomes the node (cli/node_run.py); SIGTERM stops it."""
    from ..node_run import run_one_node

    if not args.node:
        raise CliError("`shoal node run` needs --node ID (which node of cluster.yml this host runs)")
    return run_one_node(config_path(args), args.node)
