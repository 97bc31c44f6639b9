"""Structured logs: one JSON object per line on stderr.

Every line has ``ts``, ``level``, ``node`` and ``event``; ``video`` and
``epoch`` when one is involved, and any other fields the caller passes.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

_node_id = "-"
_stream: TextIO = sys.stderr


def configure(node_id: str, stream: TextIO | None = None) -> None:
    global _node_id, _stream
    _node_id = node_id
    if stream is not None:
        _stream = stream


def node_id() -> str:
    return _node_id


def emit(level: str, event: str, **fields: Any) -> None:
    rec = {"ts": round(time.time(), 6), "level": level, "node": _node_id, "event": event}
    rec.update({k: v for k, v in fields.items() if v is not None})
    try:
        _stream.write(json.dumps(rec, default=str, separators=(",", ":")) + "\n")
        _stream.flush()
    except (ValueError, OSError):  # closed stream during shutdown
        pass


def info(event: str, **fields: Any) -> None:
    emit("info", event, **fields)


def warning(event: str, **fields: Any) -> None:
    emit("warning", event, **fields)


def error(event: str, **fields: Any) -> None:
    emit("error", event, **fields)


def debug(event: str, **fields: Any) -> None:
    emit("debug", event, **fields)
