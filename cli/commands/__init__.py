"""The ``shoal`` subcommands, one module per group; each has ``register(cmd)``, which adds its
commands to the parser through :func:`cli.main.build_parser`'s ``cmd(name, func, help)`` helper
(as ``shoal chaos`` does from cli/chaos/command.py).

- :mod:`.processes`: ``up``, ``down``, ``kill``, ``stop``, ``restart``, ``demo`` (need a cluster.yml);
- :mod:`.cluster`: ``status``, ``members``, ``ring``, ``owner``, ``token``;
- :mod:`.videos`: ``upload``, ``videos``, ``video``, ``delete``, ``wait``, ``play``.

Invariant: a command's options, output and exit code are its module's alone; what every command
shares (which cluster, the client, the token, output) is :mod:`cli.connect`.
"""

from . import cluster, processes, videos

GROUPS = (processes, cluster, videos)  # the order of the commands in ``shoal --help``

__all__ = ["GROUPS", "cluster", "processes", "videos"]
