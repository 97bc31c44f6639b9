"""Shared fixtures: a real embedded S3 server per test session, and helpers to reach it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import pytest
import trio_asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import storage  # noqa: E402

ACCESS_KEY = "shoaltest"
SECRET_KEY = "shoaltest-secret"


@dataclass
class S3Server:
    port: int
    data_dir: Path
    log: Path
    proc: subprocess.Popen

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def start(self) -> None:
        self.proc = storage.start_embedded(self.data_dir, self.port, self.log, access_key=ACCESS_KEY,
                                           secret_key=SECRET_KEY, pick_free_ports=True)
        storage.wait_s3_ready(self.port, proc=self.proc)


def start_s3(base: Path) -> S3Server:
    base.mkdir(parents=True, exist_ok=True)
    port = storage.free_port()
    srv = S3Server(port, base / "data", base / "weed.log", None)  # type: ignore[arg-type]
    srv.start()
    return srv


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    srv = start_s3(tmp_path_factory.mktemp("s3"))
    try:
        yield srv
    finally:
        srv.stop()


@contextlib.asynccontextmanager
async def open_test_store(server: S3Server, bucket: str) -> AsyncIterator[storage.S3Store]:
    """Open a store on a fresh bucket; use inside a test body (it opens the trio-asyncio loop)."""
    async with trio_asyncio.open_loop():
        async with storage.open_store(server.endpoint, bucket, access_key=ACCESS_KEY,
                                      secret_key=SECRET_KEY) as st:
            yield st


from harness import cluster_factory  # noqa: E402,F401  (real clusters for integration tests)

# A ladder for tiny test media (sources of 320x240 .. 640x360), so 3 renditions appear.
TEST_LADDER = [
    {"name": "144p", "height": 144, "video_kbps": 150, "audio_kbps": 48},
    {"name": "180p", "height": 180, "video_kbps": 250, "audio_kbps": 48},
    {"name": "240p", "height": 240, "video_kbps": 350, "audio_kbps": 64},
]
