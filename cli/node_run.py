"""``shoal node run --config cluster.yml --node n2``: exactly one node, in the foreground.

For systemd, a container, or one host of a cluster spread over several machines: the process
*is* the node (no fork, no pid file), it binds to that node's ``host:http_port`` and
``host:gossip_port`` from cluster.yml, logs JSON lines on stderr, and stops gracefully on
SIGTERM/SIGINT (it leaves the cluster, then exits 0).  Secrets come from the environment of this
host alone: the token and cluster key (``auth.token_env`` / ``auth.cluster_key_env``) and, for an
S3 endpoint that needs them, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``.  A missing secret
exits 2 with the reason, as ``python -m node`` does.

Invariant: this command never starts storage or any other process.  ``storage.endpoint:
embedded`` is refused: the embedded server listens on 127.0.0.1 of the machine that runs
``shoal up``, which no other host can reach.
"""

from __future__ import annotations

from pathlib import Path

from node.config import Config, ConfigError

from .errors import CliError

__all__ = ["run_one_node", "check_runnable"]


def check_runnable(cfg: Config, node_id: str) -> None:
    """Raise :class:`CliError` when ``node_id`` cannot run alone from this config."""
    try:
        cfg.node(node_id)
    except ConfigError as e:
        raise CliError(str(e)) from None
    if cfg.storage.embedded:
        raise CliError(
            "`shoal node run` needs an S3 endpoint every host can reach (storage.endpoint: "
            "http(s)://host:port); `embedded` storage runs only under `shoal up` on one machine "
            "(see docs/deploy.md)")


def run_one_node(config_path: Path, node_id: str) -> int:
    """Check the config, then run the node in this process until SIGTERM; its exit code."""
    try:
        cfg = Config.load(config_path)
    except ConfigError as e:
        raise CliError(f"config: {e}") from None
    check_runnable(cfg, node_id)
    from node.main import main as node_main  # the node process itself (heavy imports)

    return node_main(["--config", str(config_path), "--node", node_id])
