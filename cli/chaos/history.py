"""The chaos history: one JSON object per line, appended by every thread of a run.

Every line has ``op`` and ``t0`` (unix seconds, the same clock as the records' ``at``); most have
``t1`` (when the operation ended), ``node`` and ``video``. Kinds of line:

    run        the run's parameters (seed, nodes, duration, name prefix)       first line
    upload     one logical upload: kind oneshot|tus, valid, sha256, size, name, result ok|failed|abandoned,
               ids (every id an answer named), attempts
    poll       GET /v1/videos/<id>: status, state
    playlist   a served playlist: path, status, sha256, segments [{name, status, node}] (media playlists),
               variants [{name, status}] (master)
    fault      one fault: kind, targets, t0 (injected), t1 (healed), error
    settle     the end of the settle wait: video states, seconds from the last fault
    phase      markers: workload_end, faults_end, settled, gc_done
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = ["History", "read_history"]


class History:
    """Thread-safe JSON-lines writer; every line is flushed at once (a crash loses nothing written)."""

    def __init__(self, path: str | Path, clock=time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", buffering=1)
        self._lock = threading.Lock()
        self.clock = clock
        self.counts: dict[str, int] = {}

    def write(self, op: str, **fields: Any) -> dict:
        entry = {"op": op, **fields}
        entry.setdefault("t0", self.clock())
        line = json.dumps(entry, default=str, separators=(",", ":"))
        with self._lock:
            self._f.write(line + "\n")
            self.counts[op] = self.counts.get(op, 0) + 1
        return entry

    def close(self) -> None:
        with self._lock:
            self._f.close()

    def __enter__(self) -> "History":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_history(path: str | Path) -> list[dict]:
    """Every entry of a history file; a torn last line (the writer was killed) is skipped."""
    return list(parse_lines(Path(path).read_text(errors="replace").splitlines()))


def parse_lines(lines: Iterable[str]) -> Iterator[dict]:
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "op" in entry:
            yield entry
