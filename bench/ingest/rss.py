"""Peak resident memory of a process, sampled on a background thread.

    with RssSampler(pid, interval=0.05) as s:
        ...                       # the upload
    s.peak, s.base, s.samples     # bytes
    s.cpu_seconds                 # user + system CPU the process used meanwhile
"""

from __future__ import annotations

import threading

import psutil


class RssSampler:
    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.base = self._rss()
        self.peak = self.base
        self.samples = 0
        self._cpu0 = self._cpu()
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        try:
            return self.proc.memory_info().rss
        except psutil.Error:
            return 0

    def _cpu(self) -> float:
        try:
            t = self.proc.cpu_times()
            return t.user + t.system
        except psutil.Error:
            return 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self._rss()
            self.samples += 1
            if rss > self.peak:
                self.peak = rss
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self._rss())
        self.cpu_seconds = self._cpu() - self._cpu0
