"""Structured logs: one JSON object per line on stderr, at one level for the whole process.

Every line has ``ts``, ``level``, ``node`` and ``event``; ``video`` and ``epoch`` when one is
involved, and any other fields the caller passes.

The standard-library loggers of our dependencies (hypercorn, quart, botocore / aiobotocore /
aioboto3, trio-asyncio, httpx / httpcore, asyncio, and any other) are routed into the same lines
by :class:`JsonLines`, installed on the root logger by :func:`configure` (Python warnings too,
as logger ``py.warnings``): such a line has
``event: "library_log"``, the ``logger`` name and its ``message`` (and ``exc``, the formatted
traceback, when the record carries one).

The level (``debug`` < ``info`` < ``warning`` < ``error``) is ``log_level`` from cluster.yml, or
``$SHOAL_LOG_LEVEL`` when set (:func:`level_from`); lines below it are not written, ours and the
libraries' alike.

Invariant: whatever is logged, each write is exactly one line holding one JSON object (newlines
inside values are escaped by JSON; writes are serialised by a lock, so lines from threads, such
as botocore's, never interleave).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any, Mapping, TextIO

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
LEVEL_ENV = "SHOAL_LOG_LEVEL"
# Loggers of our dependencies that may come with handlers of their own: configure() takes their
# handlers away so they reach ours through the root logger (any other logger already does).
DEPENDENCY_LOGGERS = ("hypercorn", "hypercorn.error", "hypercorn.access", "quart", "quart.app",
                      "quart.serving", "botocore", "aiobotocore", "aioboto3", "boto3",
                      "s3transfer", "urllib3", "trio_asyncio", "httpx", "httpcore", "asyncio", "py.warnings")

_node_id = "-"
_stream: TextIO = sys.stderr
_threshold = logging.INFO
_write_lock = threading.Lock()


def level_from(configured: str, environ: Mapping[str, str]) -> str:
    """The level in force: ``$SHOAL_LOG_LEVEL`` when set and not empty, else ``configured``.

    Raises ValueError naming the allowed levels for anything else (a node exits 2 on it)."""
    value = (environ.get(LEVEL_ENV) or configured).strip().lower()
    if value not in LEVELS:
        source = f"${LEVEL_ENV}" if environ.get(LEVEL_ENV) else "log_level"
        raise ValueError(f"{source}: {value!r} is not a log level (use {', '.join(LEVELS)})")
    return value


def configure(node_id: str, stream: TextIO | None = None, level: str | None = None) -> None:
    """Name the node on every line; ``stream``: where lines go; ``level``: the threshold, for
    our lines and, through the root logger, for every standard-library logger."""
    global _node_id, _stream, _threshold
    _node_id = node_id
    if stream is not None:
        _stream = stream
    if level is not None:
        _threshold = LEVELS[level]
        route_stdlib(_threshold)


def route_stdlib(threshold: int) -> None:
    """Every standard-library logger into our lines at ``threshold``: one :class:`JsonLines`
    handler on the root logger, and the dependencies' own handlers removed."""
    logging.captureWarnings(True)  # Python warnings too (logger "py.warnings"), not bare stderr text
    root = logging.getLogger()
    root.handlers = [JsonLines()]
    root.setLevel(threshold)
    for name in DEPENDENCY_LOGGERS:
        dep = logging.getLogger(name)
        dep.handlers = []
        dep.propagate = True
        dep.setLevel(logging.NOTSET)


def node_id() -> str:
    return _node_id


def current_level() -> str:
    """The level in force, by name."""
    return next(name for name, value in LEVELS.items() if value == _threshold)


def enabled(level_name: str) -> bool:
    """Whether a line at ``level_name`` is written (to skip building costly debug fields)."""
    return LEVELS.get(level_name, logging.ERROR) >= _threshold


def emit(level: str, event: str, **fields: Any) -> None:
    if not enabled(level):
        return
    rec = {"ts": round(time.time(), 6), "level": level, "node": _node_id, "event": event}
    rec.update({k: v for k, v in fields.items() if v is not None})
    _write(rec)


def _write(rec: dict[str, Any]) -> None:
    line = json.dumps(rec, default=str, separators=(",", ":")) + "\n"
    with _write_lock:
        try:
            _stream.write(line)
            _stream.flush()
        except (ValueError, OSError):  # closed stream during shutdown
            pass


def _level_name(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    return "info" if levelno >= logging.INFO else "debug"


class JsonLines(logging.Handler):
    """A standard-library handler writing each record as one of our JSON lines."""

    def emit(self, record: logging.LogRecord) -> None:
        rec: dict[str, Any] = {"ts": round(record.created, 6), "level": _level_name(record.levelno),
                               "node": _node_id, "event": "library_log", "logger": record.name}
        try:
            rec["message"] = record.getMessage()
        except Exception:  # noqa: BLE001  a library's bad format string: still one line, never raise
            rec["message"] = f"unformattable record: {record.msg!r} % {record.args!r}"
        if record.exc_info:
            rec["exc"] = logging.Formatter().formatException(record.exc_info)
        _write(rec)


def info(event: str, **fields: Any) -> None:
    emit("info", event, **fields)


def warning(event: str, **fields: Any) -> None:
    emit("warning", event, **fields)


def error(event: str, **fields: Any) -> None:
    emit("error", event, **fields)


def debug(event: str, **fields: Any) -> None:
    emit("debug", event, **fields)
