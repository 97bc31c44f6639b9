"""Which cluster a command talks to: a ``cluster.yml`` or only the URLs of some of its nodes.

Pure (no I/O): the environment is passed in. The rule, strongest first:

1. ``--url URL[,URL...]``  (giving ``--config`` as well is an error: the two disagree);
2. ``--config PATH``;
3. ``$SHOAL_URL``;
4. ``$SHOAL_CONFIG``, else ``./cluster.yml``.

An explicit flag beats the environment, and a URL in the environment beats the default file,
so ``SHOAL_URL=http://host:8001 shoal status`` works from any directory. With URLs only, the
bearer token comes from ``$SHOAL_TOKEN``; commands that manage local processes (``up``,
``down``, ``kill``, ``stop``, ``restart``, ``demo``) refuse with :func:`needs_cluster_file`.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .errors import CliError

__all__ = ["Endpoint", "Source", "choose_source", "parse_urls", "needs_cluster_file", "select_endpoint",
           "URL_ENV", "CONFIG_ENV", "TOKEN_ENV"]

URL_ENV, CONFIG_ENV, TOKEN_ENV = "SHOAL_URL", "SHOAL_CONFIG", "SHOAL_TOKEN"
_MAX_URLS = 64  # more entry points than any cluster has nodes is a mistake, not a list


@dataclass(frozen=True)
class Endpoint:
    """One node reached by URL alone; ``id`` is ``host:port`` until the node says its name."""

    id: str
    url: str


@dataclass(frozen=True)
class Source:
    """Exactly one of ``urls`` (non-empty) and ``config`` is set."""

    urls: tuple[Endpoint, ...] = ()
    config: Path | None = None

    @property
    def remote(self) -> bool:
        return bool(self.urls)


def parse_urls(text: str) -> tuple[Endpoint, ...]:
    """``"http://a:8001, http://b:8002/"`` -> two endpoints; CliError for anything else."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise CliError("--url: no URL given (e.g. --url http://127.0.0.1:8001)")
    if len(parts) > _MAX_URLS:
        raise CliError(f"--url: {len(parts)} URLs, at most {_MAX_URLS}")
    out: list[Endpoint] = []
    for p in parts:
        u = urllib.parse.urlsplit(p)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise CliError(f"--url: {p!r} is not an http(s)://host[:port] URL")
        if u.query or u.fragment or u.path not in ("", "/"):
            raise CliError(f"--url: {p!r}: give the node's base URL, without a path")
        try:
            port = u.port or (443 if u.scheme == "https" else 80)
        except ValueError:
            raise CliError(f"--url: {p!r} has a bad port") from None
        host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
        ep = Endpoint(f"{host}:{port}", f"{u.scheme}://{host}:{port}")
        if ep not in out:
            out.append(ep)
    return tuple(out)


def choose_source(url: str | None, config: str | None, env: Mapping[str, str]) -> Source:
    """The rule of the module docstring."""
    if url is not None and config is not None:
        raise CliError("give --url or --config, not both")
    if url is not None:
        return Source(urls=parse_urls(url))
    if config is not None:
        return Source(config=Path(config))
    if env.get(URL_ENV):
        return Source(urls=parse_urls(env[URL_ENV]))
    return Source(config=Path(env.get(CONFIG_ENV) or "cluster.yml"))


def select_endpoint(endpoints: tuple[Endpoint, ...] | list[Endpoint], node: str) -> Endpoint:
    """``--node`` with URLs only: one of them, by ``host:port`` or by URL."""
    for ep in endpoints:
        if node in (ep.id, ep.url):
            return ep
    raise CliError(f"--node {node}: not one of the --url nodes ({', '.join(ep.id for ep in endpoints)})")


def needs_cluster_file(command: str) -> CliError:
    """The refusal of a process-managing command run with URLs only."""
    return CliError(f"`shoal {command}` manages processes on this machine and needs a cluster.yml "
                    f"(--config PATH or ${CONFIG_ENV}); --url / ${URL_ENV} only reach nodes over HTTP")
