"""When an attempt may go: the client-wide 429 pause, then a slot from the rate limiter.

A ``Retry-After`` pauses every task of the client (a `PauseGate` shared by
its `with_options` copies), not only the one told; an adaptive or shared
limiter also hears how each answer went (`ThrottleFeedback`), so it slows
down on a 429 and speeds up again on answers that are not.
"""

from __future__ import annotations

from convoso_async import _telemetry as telemetry
from convoso_async._errors import APIStatusError
from convoso_async._pacing.ratelimit import PauseGate, RateLimiter, ThrottleFeedback
from convoso_async._pacing.retry import is_testing

__all__ = ["Pacer"]


class Pacer:
    """Paces one pipeline's attempts on its pause gate and rate limiter (None: no limit)."""

    __slots__ = ("_feedback", "limiter", "pause")

    def __init__(self, pause: PauseGate, limiter: RateLimiter | None) -> None:
        self.pause = pause
        self.limiter = limiter
        self._feedback = limiter if isinstance(limiter, ThrottleFeedback) else None

    async def wait_turn(self) -> None:
        """Wait out any client-wide pause, then take a slot from the rate limiter."""
        await self.pause.wait()
        if self.limiter is not None:
            await self.limiter.acquire()
            # A 429 may have paused the client while this task queued on the
            # limiter: wait it out, then take a fresh slot so the pacing
            # holds (keeping the old slot would release a burst at the end).
            while self.pause.remaining > 0:
                await self.pause.wait()
                await self.limiter.acquire()

    def answered(self, status: int) -> None:
        """Tell the limiter an answer came that was neither a 429 nor a 5xx."""
        if self._feedback is not None and status != 429 and status < 500:
            self._feedback.on_success()

    async def refused(self, error: APIStatusError, note: telemetry.Attempt | None) -> None:
        """Heed an error answer's ``Retry-After`` (and a 429): ``note`` hears of the pause."""
        retry_after = None if is_testing() else error.retry_after
        if retry_after is not None:
            # Told to wait: every task of this client waits, not only this one.
            self.pause.pause_for(retry_after)
            if note is not None:
                note.paused(retry_after)
        if error.status_code == 429 and self._feedback is not None:
            # The limiter slows down (and a shared one pauses its other processes).
            await self._feedback.on_throttle(retry_after)
