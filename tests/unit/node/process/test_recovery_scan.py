"""The worker's recovery scan: how a failed scan is logged (in-process, in-memory store)."""

from __future__ import annotations

import io
import json

import pytest
import trio
import trio.testing

import storage
from node import log
from node.config import Config, NodeSpec
from node.records.store import VideoStore
from node.process.worker import Worker, bucket_missing


class FailingList(storage.MemoryStore):
    """A store whose every listing fails with ``error``."""

    def __init__(self, error: storage.StorageError) -> None:
        super().__init__()
        self.error = error

    async def list(self, prefix: str, **kw) -> list:
        self.calls.append("list")
        raise self.error


@pytest.mark.parametrize("error, level", [
    # a fresh cluster: the scan runs before the storage probe has created the bucket
    (storage.NotFound("list pending/: NoSuchBucket"), "warning"),
    (storage.StorageUnavailable("list pending/: EndpointConnectionError"), "warning"),
    (storage.NotFound("list pending/: 404"), "error"),
    (storage.StorageError("list pending/: AccessDenied Access Denied"), "error"),
])
async def test_a_failed_scan_is_a_warning_only_when_storage_is_unreachable_or_has_no_bucket(
        tmp_path, monkeypatch, error, level):
    # given a worker whose store fails every listing, logging into a buffer
    lines = io.StringIO()
    monkeypatch.setattr(log, "_stream", lines)
    store = FailingList(error)
    cfg = Config(nodes=(NodeSpec("n1", "127.0.0.1", 1, 2),))
    worker = Worker(VideoStore(store, "n1"), cfg, "n1", tmp_path)
    # when it runs its first scan
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.serve)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    # then the failure is logged once, at the expected level, with storage's message
    assert store.calls == ["list"]
    logged = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert [(r["event"], r["level"], r["error"]) for r in logged] == [
        ("recovery_scan_failed", level, str(error))]


@pytest.mark.parametrize("error, missing", [
    (storage.NotFound("list pending/: NoSuchBucket"), True),
    (storage.NotFound("get videos/abc: NoSuchKey"), False),
    (storage.StorageError("list pending/: NoSuchBucket"), False),  # only a NotFound says so
    (storage.StorageUnavailable("list pending/: 503"), False),
])
def test_bucket_missing(error, missing):
    assert bucket_missing(error) is missing
