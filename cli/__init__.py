"""The ``shoal`` command line and the process launcher.

Public face:
- :class:`Launcher` starts, stops and inspects the processes of one ``cluster.yml`` on this
  machine (embedded S3 server and every node), with state under the config's ``state_dir``;
- :class:`Client`, a small synchronous HTTP client that talks to whichever node answers;
- the error tree :class:`CliError` > :class:`ApiError`, :class:`Unreachable`, :class:`LaunchError`;
- ``main()`` (the console script ``shoal``) lives in :mod:`cli.main`.
"""

from .client import Client
from .errors import ApiError, CliError, LaunchError, Unreachable
from .launcher import Launcher, NodeStatus, Secrets, load_or_create_secrets

__all__ = ["Client", "ApiError", "CliError", "LaunchError", "Unreachable", "Launcher", "NodeStatus",
           "Secrets", "load_or_create_secrets"]
