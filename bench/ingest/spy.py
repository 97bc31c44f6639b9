"""Where the node's CPU goes during an upload: py-spy (``pip install py-spy``, not a dependency).

    with Profiler(pid, out_path) as prof:
        ...                                  # the upload
    prof.report(top=25)                      # Markdown: self time and inclusive time per function

py-spy samples the node's Python stacks (``--nonblocking``: the node is never paused, ``--idle``:
waiting in epoll shows as idle) into collapsed-stack form; the report sums samples per function.
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from pathlib import Path

# Functions of the upload path worth an inclusive figure, matched against "name (file)" frames.
MARKERS = {
    "idle (epoll wait)": ("epoll", "select.epoll", "get_events"),
    "hypercorn/h11 receive": ("h11", "hypercorn"),
    "quart request body": ("quart",),
    "node.http.app body backpressure": ("BoundedBody", "BackpressureConnection"),
    "node.upload.landing ingest": ("landing.py",),
    "storage.multipart StreamingUpload": ("StreamingUpload",),
    "storage.multipart PartFeeder": ("PartFeeder", "FedPart"),
    "StreamingUpload.write (sha256 + part copies)": ("StreamingUpload.write",),
    "botocore SigV4 payload sha256": ("SigV4Auth.payload",),
    "trio-asyncio bridge": ("trio_asyncio",),
    "aiobotocore/botocore": ("aiobotocore", "botocore"),
    "aiohttp send": ("aiohttp",),
}


def py_spy() -> str | None:
    exe = Path(sys.executable).with_name("py-spy")
    return str(exe) if exe.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, pid: int, out: Path, rate: int = 200) -> None:
        self.pid, self.out, self.rate = pid, Path(out), rate
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Profiler":
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed (.venv/bin/pip install py-spy)")
        self.proc = subprocess.Popen([exe, "record", "--pid", str(self.pid), "--format", "raw", "--rate",
                                      str(self.rate), "--nonblocking", "--idle", "-o", str(self.out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        import time
        time.sleep(1.0)  # let it attach
        return self

    def __exit__(self, *exc) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def stacks(self) -> list[tuple[list[str], int]]:
        out = []
        for line in self.out.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if stack and n.isdigit():
                out.append((stack.split(";"), int(n)))
        return out

    def report(self, top: int = 20) -> str:
        stacks = self.stacks()
        total = sum(n for _, n in stacks) or 1
        self_time: collections.Counter[str] = collections.Counter()
        incl: collections.Counter[str] = collections.Counter()
        stacks = [(f, n) for f, n in stacks if any("unrolled_run" in x for x in f)]  # trio's thread
        total = sum(n for _, n in stacks) or 1
        for frames, n in stacks:
            if frames:
                self_time[_short(frames[-1])] += n
            seen = set()
            for label, keys in MARKERS.items():
                if any(any(k in f for k in keys) for f in frames):
                    seen.add(label)
            for label in seen:
                incl[label] += n
        lines = [f"{total} samples of the node's trio thread (idle included).", "",
                 "| inclusive (any frame in) | share |", "|---|---|"]
        lines += [f"| {label} | {incl[label] / total:.0%} |" for label, _ in incl.most_common()]
        lines += ["", "| self time (leaf function) | share |", "|---|---|"]
        lines += [f"| `{name}` | {n / total:.1%} |" for name, n in self_time.most_common(top)]
        return "\n".join(lines)


def _short(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else where
    return f"{name} ({short})"
