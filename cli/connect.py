"""From the parsed command line to the cluster: which cluster (the rule of :mod:`cli.target`),
its cluster.yml, its launcher, its token and a :class:`~cli.client.Client`; and the two ways a
command speaks (``emit_json`` on stdout, ``say`` on stderr).

Invariant: with URLs only (``--url`` or ``$SHOAL_URL``) nothing here reads a cluster.yml; the
token is then ``$SHOAL_TOKEN``, and asking for the file raises :func:`cli.target.needs_cluster_file`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from node.config import Config, ConfigError

from .client import Client
from .errors import CliError
from .launcher import Launcher
from .target import TOKEN_ENV, Source, choose_source, needs_cluster_file

__all__ = ["source", "config_path", "load_config", "launcher", "token_for", "client", "emit_json", "say"]


def source(args: argparse.Namespace) -> Source:
    return choose_source(args.url, args.config, os.environ)


def config_path(args: argparse.Namespace) -> Path:
    src = source(args)
    if src.config is None:
        raise needs_cluster_file(args.command)
    return src.config


def load_config(args: argparse.Namespace) -> Config:
    try:
        return Config.load(config_path(args))
    except ConfigError as e:
        raise CliError(f"config: {e}") from None


def launcher(args: argparse.Namespace, out: TextIO | None = None) -> Launcher:
    path = config_path(args)
    if not path.exists():
        raise CliError(f"config: {path}: no such file; give --config PATH, or --url URL "
                       f"(or $SHOAL_URL) for the commands that only talk HTTP")
    return Launcher(path, out=out)


def token_for(launch: Launcher) -> str | None:
    """The launcher's generated token when this machine started the cluster, else $SHOAL_TOKEN."""
    s = launch.existing_secrets()
    return s.token if s else launch.cfg.token()


def client(args: argparse.Namespace) -> Client:
    src = source(args)
    if src.remote:
        return Client(src.urls, node=args.node, token=os.environ.get(TOKEN_ENV) or None,
                      notice=_notice)
    launch = launcher(args)
    return Client(launch.cfg, node=args.node, token=token_for(launch), notice=_notice)


def _notice(text: str) -> None:
    print(f"\nnote: {text}", file=sys.stderr)


def emit_json(data: Any, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(json.dumps(data, indent=2, default=str) + "\n")


def say(text: str) -> None:
    print(text, file=sys.stderr)
