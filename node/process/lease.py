"""Keeping a lease: the one renewal loop of a video's holder and of a chunk unit's holder.

Pure scheduling around an injected ``renew`` (the storage write) and ``clock``; imports trio and
``storage`` (for its error type) only.
"""

from __future__ import annotations

from typing import Awaitable, Callable

import trio

import storage

__all__ = ["renew_every_third"]


async def renew_every_third(lease_seconds: float, expires: float, renew: Callable[[], Awaitable[float]],
                            clock: Callable[[], float], *, lost: Callable[[str], None],
                            failed: Callable[[str, float], None],
                            refusals: tuple[type[BaseException], ...]) -> None:
    """Keep a lease (a video's or a chunk unit's) until it is lost: ``renew()`` every third of
    the lease, each try bounded by that third; it returns the lease's new end.  ``lost(reason)``
    once, then return: when a renewal is refused (one of ``refusals``: the epoch moved on, the
    video or unit is gone), or when ``expires`` (the lease's end as last written) passes with no
    renewal answered: the holder cannot reach storage and another node may claim at a higher
    epoch (fencing keeps that safe; stopping saves the wasted work and frees the slot).  Every
    unanswered try before that: ``failed(error, seconds left)``."""
    t = lease_seconds
    while True:
        await trio.sleep(t / 3)
        renewed, error = None, f"no answer from storage within {t / 3:.1f} s"
        with trio.move_on_after(t / 3):  # Invariant: one renewal never outlasts its period
            try:
                renewed = await renew()
            except refusals as e:
                lost(getattr(e, "message", str(e)))
                return
            except storage.StorageError as e:
                error = str(e)
        if renewed is not None:
            expires = renewed
        elif clock() >= expires:
            lost("lease expired without a renewal answered (storage unreachable)")
            return
        else:
            failed(error, expires - clock())
