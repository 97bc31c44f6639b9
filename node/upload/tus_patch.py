"""One PATCH in progress: its bytes, the parts they go into, and their sha1.

:class:`PatchInProgress` is the PATCH's state and its part rules; the bytes go to storage through
a :class:`storage.PartFeeder` (the same one the one-shot upload uses: parts streamed while their
bytes arrive, ``parts_in_flight`` open at once but the last, sha1 on a worker thread in order).
With Content-Length a part's size is known before its bytes are here (:func:`tus.planned_part`),
so the part is opened at its first byte; without it, a part is opened once it is held whole
(:func:`tus.cut_size`).  Part numbers come from the PATCH's lock (fencing, :func:`tus.take_lock`).
Every byte received is in ``held``, in an open part (``parts.open``) or in an answered part
(``parts.done``), so a PATCH cut off by its client can keep it (``TusUploads`` salvages it).

The locking, the commit and the record's changes are :mod:`node.upload.tus_uploads`'s.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import storage

from node.upload import tus
from node.upload.errors import BeyondUploadLength, UploadGone, UploadRefused


@dataclass
class PatchInProgress:
    """One PATCH in progress."""
    vid: str
    request: str
    offset: int  # Upload-Offset: where this PATCH starts
    checksum: tuple[str, bytes] | None
    up: dict[str, Any] | None = None  # the upload state as locked; None until the lock is ours
    refusal: UploadRefused | None = None  # the lock was refused
    body_length: int | None = None  # Content-Length, when the client sent one
    held: storage.HeldBytes = field(default_factory=storage.HeldBytes)  # received, not in a part yet
    next_number: int = 1  # the next part number; this lock may use up to last_number
    last_number: int = storage.MAX_PARTS
    received: int = 0
    backlog: int = 0  # received bytes not yet passed on to storage when the body ended
    parts: storage.PartFeeder | None = None  # while the body streams, and what it left after
    hasher: Any = field(default_factory=hashlib.sha1)
    error: BaseException | None = None
    salvageable: bool = True
    lock_lost: bool = False
    ms: dict[str, float] = field(default_factory=dict)  # time per step, logged with tus_patch

    def beyond_length(self) -> bool:
        """(Once locked.)  The body went past Upload-Length: refused, nothing of it is kept."""
        assert self.up is not None
        if self.offset + self.received <= self.up["length"]:
            return False
        self.salvageable = False
        self.error = BeyondUploadLength(f"the body goes beyond Upload-Length ({self.up['length']} bytes); "
                                        "nothing of this PATCH was kept")
        return True

    @property
    def all_received(self) -> bool:
        return self.received == self.body_length

    def cut_size(self, *, ended: bool) -> int:
        """Bytes to send as the next part now (0: none yet); see :func:`tus.cut_size`."""
        if ended:
            remaining: int | None = 0
        elif self.body_length is None:
            remaining = None
        else:
            remaining = max(0, self.body_length - self.received)
        final = self.offset + self.received + (remaining or 0) == self.up["length"]
        return tus.cut_size(self.held.size, remaining, part_size=self.up["part_size"], final=final)

    def take_number(self) -> int:
        """The next of this lock's part numbers (fencing: tus.take_lock)."""
        num, self.next_number = self.next_number, self.next_number + 1
        if num > self.last_number:  # cannot happen: the lock's numbers cover every part it may cut
            raise AssertionError(f"part {num} is beyond this lock's numbers (up to {self.last_number})")
        return num

    def take_part(self, n: int) -> tuple[int, bytes]:
        """The next part: its number and ``n`` held bytes, joined."""
        num = self.take_number()
        data, _ = self.held.take(n)
        return num, data

    def planned_part(self) -> int:
        """(Content-Length known.)  The size of the next part, from its first byte; see
        :func:`tus.planned_part`."""
        assert self.up is not None and self.body_length is not None
        unassigned = self.held.size + max(0, self.body_length - self.received)
        final = self.offset + self.received + max(0, self.body_length - self.received) == self.up["length"]
        return tus.planned_part(unassigned, part_size=self.up["part_size"], final=final)

    def receive(self, chunk: bytes) -> None:
        """A chunk of the body: into the part being fed, the rest held."""
        self.received += len(chunk)
        rest = self.parts.feed(chunk) if self.parts is not None else chunk
        if rest is not None:
            self.held.add(rest)

    async def open_parts(self, *, ended: bool) -> None:
        """(Once locked.)  Open the next parts whose size is known now and hand them what is held."""
        assert self.parts is not None
        while self.parts.current is None and self.held.size:
            if self.body_length is not None and not ended:
                size = self.planned_part()
            else:
                size = self.cut_size(ended=ended)
            if not size:
                return
            await self.parts.open_part(size, self.held, last=self.all_received,  # the last goes at once
                                       next_number=self.take_number)

    def note_part_failure(self) -> None:
        """After streaming: a part that failed ends the PATCH (a gone upload was terminated)."""
        if self.parts is None or self.parts.error is None or self.error is not None:
            return
        if isinstance(self.parts.error, storage.NotFound):
            self.error, self.salvageable = UploadGone("the upload was terminated meanwhile"), False
        else:
            self.error = self.parts.error

    def hash_held_body(self) -> None:
        """sha1 over the body bytes still held (they become the tail)."""
        storage.hash_pieces(self.hasher, self.held.hashed_rest())


def ms_since(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)
