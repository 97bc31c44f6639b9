"""The logging seam: membership reports through a callable, never through the node's logger.

``Log`` is any callable ``log(level, event, **fields)`` with ``level`` one of ``"debug"``,
``"info"``, ``"warning"``, ``"error"`` and ``event`` a short snake_case name; the node passes its
structured logger (``node.log.emit``), tests may pass a list's append.  ``stdlib_log``, the
default, writes to the standard library logger ``"membership"``.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}
_logger = logging.getLogger("membership")


class Log(Protocol):
    def __call__(self, level: str, event: str, **fields: Any) -> None: ...


def stdlib_log(level: str, event: str, **fields: Any) -> None:
    """Report through ``logging.getLogger("membership")`` (``event`` then ``key=value`` pairs)."""
    lv = _LEVELS.get(level, logging.INFO)
    if _logger.isEnabledFor(lv):
        _logger.log(lv, "%s %s", event, " ".join(f"{k}={v}" for k, v in fields.items()),
                    extra={"event": event, "fields": fields})
