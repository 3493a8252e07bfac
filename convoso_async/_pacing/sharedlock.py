"""A lock the tasks of any event loop, in any thread, can share: what a shared limiter queues on.

`anyio.Lock` belongs to one event loop: a task of another loop waits on a future that loop
never wakes. One limiter given to several clients (two `Convoso`, each with its own loop
thread; a `Convoso` beside an `AsyncConvoso` under ``asyncio.run``) meets exactly that, and
hung. `SharedLock` keeps its queue under a thread lock and wakes each waiter in its own loop,
thread-safely. Like `anyio.Lock`: first come, first served, and a waiter cancelled while it
waits leaves no trace (had it just been handed the lock, it hands it on).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from trio.lowlevel import TrioToken

__all__ = ["SharedLock", "running_loop"]


def running_loop() -> asyncio.AbstractEventLoop | TrioToken:
    """The event loop running in this thread: an asyncio loop, or trio's run (its token).

    Raises RuntimeError when neither runs here.
    """
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        try:
            import trio
        except ImportError:
            raise RuntimeError("no event loop is running in this thread") from None
        return trio.lowlevel.current_trio_token()


class _Waiter:
    """One task waiting for the lock, and how to wake it from any thread."""

    __slots__ = ("event", "granted", "loop", "wake")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.loop = running_loop()
        self.granted = False
        self.wake: Callable[[], object]
        if isinstance(self.loop, asyncio.AbstractEventLoop):
            self.wake = functools.partial(self.loop.call_soon_threadsafe, self.event.set)
        else:
            self.wake = functools.partial(self.loop.run_sync_soon, self.event.set)

    def wake_from(self, loop: asyncio.AbstractEventLoop | TrioToken | None) -> None:
        """Wake the task: directly from its own loop (the common case, no system call),
        else through its loop's thread-safe door. Raises RuntimeError if its loop is closed."""
        if loop is self.loop:
            self.event.set()
        else:
            self.wake()


class SharedLock:
    """An async lock for tasks of any number of event loops and threads (asyncio or trio)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[_Waiter] = deque()

    def __repr__(self) -> str:
        state = "locked" if self._held else "unlocked"
        return f"<SharedLock {state}, {len(self._waiters)} waiting>"

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    async def acquire(self) -> None:
        """Wait for the lock, behind those that asked before, and take it."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        with self._mutex:
            if not self._held:
                self._held = True
                waiter = None
            else:
                waiter = _Waiter()
                self._waiters.append(waiter)
        if waiter is None:
            # Let the loop's other tasks run, as anyio.Lock does, without losing the lock.
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return
        try:
            await waiter.event.wait()
        except BaseException:
            with self._mutex:
                if waiter.granted:
                    self._hand_on()  # handed over as this task was cancelled: pass it on
                elif waiter in self._waiters:  # not there if skipped as its loop had closed
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give the lock to the next waiter, whatever its loop, or free it."""
        with self._mutex:
            self._hand_on()

    def _hand_on(self) -> None:
        if not self._waiters:
            self._held = False
            return
        try:
            here: asyncio.AbstractEventLoop | TrioToken | None = running_loop()
        except RuntimeError:  # released from a thread with no loop running
            here = None
        while self._waiters:
            waiter = self._waiters.popleft()
            try:
                waiter.wake_from(here)
            except RuntimeError:  # its loop has closed: that task will never take it
                continue
            waiter.granted = True
            return
        self._held = False
