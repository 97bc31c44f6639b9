"""What the command line reports instead of a traceback.

    CliError              expected failure: printed as ``error: <message>``, exit code ``exit_code``
     +-- ApiError         a node answered {"error": {"code", "message"}} (or another non-2xx)
     +-- Unreachable      no node (or not the one asked for) accepted a connection
     +-- LaunchError      a process of the cluster could not be started or did not become ready

``httpx`` transport errors are translated at the edge, in :mod:`cli.client`.
"""

from __future__ import annotations


class CliError(Exception):
    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class ApiError(CliError):
    """A node answered with an error; ``code`` is the contract's snake_case code."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: float | None = None):
        super().__init__(f"{message} ({code}, HTTP {status})")
        self.status = status
        self.code = code
        self.detail = message
        self.retry_after = retry_after


class Unreachable(CliError):
    """No node answered; the message names what was tried."""


class LaunchError(CliError):
    """A cluster process failed to start or to become ready; the message holds its log tail."""
