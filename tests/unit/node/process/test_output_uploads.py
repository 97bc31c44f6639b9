"""Uploading outputs: several puts failing at once (storage down) raise one StorageError, not a group."""

from __future__ import annotations

from pathlib import Path

import pytest

import storage
from node.process.outputs import put_each


async def test_failures_of_several_puts_raise_the_first_as_itself():
    done: list[str] = []

    async def put(f: Path) -> None:
        if f.name.startswith("bad"):
            raise storage.StorageUnavailable(f"put {f.name}: down")
        done.append(f.name)

    files = [Path("bad1"), Path("ok1"), Path("bad2"), Path("ok2")]
    with pytest.raises(storage.StorageUnavailable, match="put bad"):
        await put_each(put, files)
    assert sorted(done) == ["ok1", "ok2"]  # the others still ran to their end
    await put_each(put, [Path("ok3")])
    assert "ok3" in done


async def test_an_unexpected_error_is_not_swallowed():
    async def put(f: Path) -> None:
        raise KeyError(f.name)

    with pytest.raises(BaseExceptionGroup):
        await put_each(put, [Path("x")])
