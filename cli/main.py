"""``shoal``: the command line (argparse). ``main(argv)`` returns the exit code.

Every command takes ``--config PATH`` (default ``$SHOAL_CONFIG`` or ``./cluster.yml``) or
``--url URL[,URL...]`` (default ``$SHOAL_URL``; the rule is in :mod:`cli.target`), and ``--node
ID`` (which node to ask; default the first that answers); read commands take ``--json``. With
URLs only, the token is ``$SHOAL_TOKEN`` and the commands that manage processes refuse.
Expected failures (node down, storage down, bad file, API errors) print ``error: ...`` on
stderr and exit 1, never a traceback. ``shoal wait`` exits 0 ready, 1 failed, 2 timeout;
``shoal status`` exits 1 when a node is not ready or storage is unreachable; ``shoal config check``
exits 0 with the effective configuration as YAML, or 2 with every problem and its path.

This module is the parser and the one place errors become exit codes; the commands live in
:mod:`cli.commands` (by group) and :mod:`cli.chaos`, what they share in :mod:`cli.connect`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from typing import Any, Callable

from node.config import ConfigError

from .commands import GROUPS
from .commands.cluster import MEMBER_STATES, format_mapping, select_members
from .commands.videos import WAIT_FAILED, WAIT_READY, WAIT_TIMEOUT, format_video, wait_for
from .connect import source
from .errors import CliError
from .health import format_status
from .target import needs_cluster_file

__all__ = ["main", "build_parser", "wait_for", "package_version", "select_members",
           "format_status", "format_mapping", "format_video", "WAIT_READY", "WAIT_FAILED",
           "WAIT_TIMEOUT", "MEMBER_STATES", "PROCESS_COMMANDS"]

# commands that start, stop or signal processes on this machine: never with URLs only
PROCESS_COMMANDS = frozenset({"up", "down", "kill", "stop", "restart", "demo", "chaos", "node",
                              "lab"})


def build_parser() -> argparse.ArgumentParser:
    # The common options work before and after the subcommand: the subparsers' copies use
    # SUPPRESS so they only override the main parser's defaults when given.
    def common(p: argparse.ArgumentParser, default: Any) -> None:
        d = (lambda v: v) if default is None else (lambda v: argparse.SUPPRESS)
        p.add_argument("--config", default=d(None), metavar="PATH",
                       help="cluster.yml (default: $SHOAL_CONFIG or ./cluster.yml)")
        p.add_argument("--url", default=d(None), metavar="URL",
                       help="talk to the node(s) at URL[,URL...] without a cluster.yml "
                            "(default: $SHOAL_URL; token from $SHOAL_TOKEN)")
        p.add_argument("--node", default=d(None), metavar="ID",
                       help="node to ask (default: the first that answers)")
        p.add_argument("--json", action="store_true", default=d(False),
                       help="machine-readable output (read commands)")

    parser = argparse.ArgumentParser(prog="shoal", description="Run and use a Shoal video cluster.")
    common(parser, None)
    parser.add_argument("--version", action="version", version=f"shoal {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def cmd(name: str, func: Callable, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        common(p, argparse.SUPPRESS)
        p.set_defaults(func=func)
        return p

    for group in GROUPS:
        group.register(cmd)
    from .lab import register as register_lab  # `shoal lab up|down|cut|heal` (cli/lab/)
    register_lab(cmd)
    from .chaos import register as register_chaos  # `shoal chaos` (cli/chaos/command.py)
    register_chaos(cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in PROCESS_COMMANDS and source(args).remote:
            raise needs_cluster_file(args.command)
        return int(args.func(args) or 0)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `shoal videos | head`: the reader left, nothing to report
        sys.stdout = open(os.devnull, "w")
        return 141


def package_version(lookup: Callable[[str], str] = importlib.metadata.version) -> str:
    """The installed ``shoal`` distribution's version (pyproject.toml), or why there is none."""
    try:
        return lookup("shoal")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown: the shoal package is not installed)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
