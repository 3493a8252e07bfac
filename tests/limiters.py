"""Limiters of a test's own, for checking what the client asks of any limiter."""

from __future__ import annotations

import anyio.lowlevel


class CountingLimiter:
    """A limiter of one's own (anything with ``async acquire()`` plugs in) that counts grants."""

    def __init__(self) -> None:
        self.acquired = 0

    async def acquire(self) -> None:
        await anyio.lowlevel.checkpoint()
        self.acquired += 1


class CountingFallback:
    """A fallback for the Redis limiter: grants at once and counts how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0

    def __repr__(self) -> str:
        return "CountingFallback()"

    async def acquire(self) -> None:
        self.calls += 1
