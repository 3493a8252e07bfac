"""One event loop in a background thread, for the blocking calls of a `Convoso` and its copies.

`LoopThread` starts an asyncio loop in a daemon thread on the first call (so a
client made and never used starts nothing), holds anyio's `BlockingPortal` into
it, and runs every blocking call there, from any number of threads at once: they
all share the one `AsyncConvoso` the loop serves, so one pool, limiter, 429
pause, retry budget and breaker. A thread that has an event loop of its own
running (a notebook cell, a sync call inside ``asyncio.run``) blocks like any
other: the work runs on this loop, not on the caller's, so nothing deadlocks.

- Ctrl-C while a call waits cancels its work in the loop as ``asyncio.run``
  cancels its task (a bulk call writes its audit lines and calls
  ``on_interrupt``), waits for that to finish, then raises `KeyboardInterrupt`; inside
  ``asyncio.run`` too, whose own handler would only flag a task this call is blocking.
- A callback of a call (``on_progress``) that raises ``SystemExit`` (or another exception
  that is not an `Exception`) stops the call as Ctrl-C does; it is raised in the caller's
  thread, and the loop lives on (asyncio would have let it end the loop).
- Nothing that can run in the loop's own thread waits for the loop: an iterator the
  garbage collector frees there (or in a forked child) stops its work and leaves.
- `close` cancels what is still running, closes the client's pool in its own
  loop, and stops the thread. A `LoopThread` nobody refers to any more does the
  same by itself, without waiting (a forgotten client does not leak a thread).
- A call as the interpreter shuts down (``__del__`` at exit), when the loop's thread can
  no longer run, is refused at once. A signal handler may use the client, even while the
  thread it interrupted is inside a call of the same client (its setup included).
- After ``os.fork()`` (Celery's prefork pool): a loop started in the parent
  exists only there, with its connections; in the child, a call raises
  `ConfigurationError` at once, never hangs, and `close` touches nothing of the
  parent's. A client made in the parent and first used in the child starts its
  loop in the child and works.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import os
import signal
import sys
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any, Final, Generic, ParamSpec, TypeVar

import anyio
from anyio.abc import ObjectSendStream
from anyio.from_thread import BlockingPortal
from anyio.streams.memory import MemoryObjectReceiveStream

from convoso_async._errors import ConfigurationError

__all__ = ["LoopThread", "raised_in_caller"]

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")

#: Bounds on starting and stopping the loop thread (both take milliseconds).
START_TIMEOUT: Final = 10.0
STOP_TIMEOUT: Final = 10.0

_CLOSED = "this Convoso was closed; create a new one"
_SHUTTING_DOWN = (
    "the interpreter is shutting down and this Convoso's event loop thread no longer runs "
    "(a call from __del__ or a weakref callback at exit); make the call before the program "
    "ends, in an atexit handler say"
)

#: Every LoopThread of the process, to renew their locks in a forked child: a lock another
#: thread held at the fork stays held in the child, where that thread does not exist.
_LOOPS: weakref.WeakSet[LoopThread] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for loop in list(_LOOPS):
        loop._lock = threading.RLock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Abandoned(Exception):
    """The calling thread gave up on the call (Ctrl-C): nobody reads its result."""


class _Call(Generic[T]):
    """One blocking call's work in the loop, in a cancel scope the calling thread can cancel."""

    def __init__(self, work: Callable[[], Awaitable[T]]) -> None:
        self._work = work
        self._scope: anyio.CancelScope | None = None
        self._cancelled = False
        #: What a callback of the call raised for the caller's thread (see `raised_in_caller`).
        self.carried: BaseException | None = None

    async def run(self) -> T:
        _CALL.set(self)  # this task's context, and its child tasks' (where callbacks run)
        with anyio.CancelScope() as self._scope:
            if self._cancelled:  # cancelled before it started
                self._scope.cancel()
            return await self._work()
        raise _Abandoned  # reached only when `cancel` stopped it

    def cancel(self) -> None:
        """Stop the work (in the loop's thread, through the portal)."""
        self._cancelled = True
        if self._scope is not None:
            self._scope.cancel()


_CALL: contextvars.ContextVar[_Call[Any]] = contextvars.ContextVar("convoso_sync_call")


def raised_in_caller(callback: Callable[P, R]) -> Callable[P, R]:
    """``callback`` (``on_progress``, ``on_interrupt``), run in the loop, for a blocking call.

    What it raises that is not an `Exception` (``sys.exit()``, ``KeyboardInterrupt``) is
    meant for the program, not for the loop's thread, where asyncio would let it end the
    loop (and the client with it): the call stops as on Ctrl-C, and it is raised in the
    thread that made the call.
    """

    @functools.wraps(callback)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return callback(*args, **kwargs)
        except Exception:
            raise
        except BaseException as exc:
            call = _CALL.get(None)
            if call is None:
                raise
            if call.carried is None:
                call.carried = exc
            call.cancel()
            return None  # type: ignore[return-value]  # the call is stopping

    return run


def _wait(portal: BlockingPortal, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` in the portal's loop and wait for its result, in this thread."""
    call = _Call(work)
    try:
        future = portal.start_task_soon(call.run)
    except RuntimeError:  # the portal stopped: the client was closed (by another thread)
        raise ConfigurationError(_CLOSED) from None
    with _ctrl_c_interrupts():
        try:
            result = future.result()
        except _Abandoned:
            if call.carried is None:
                raise
            raise call.carried from None
        except KeyboardInterrupt:
            # Ctrl-C here: stop the work as asyncio.run stops its task, let it account for
            # itself (a bulk call's audit lines and on_interrupt), then go on interrupting.
            # A second Ctrl-C stops the waiting, not the cleanup.
            with contextlib.suppress(RuntimeError):  # the portal stopped meanwhile
                portal.call(call.cancel)
            concurrent.futures.wait([future])
            raise
        except concurrent.futures.CancelledError:
            # The portal cancelled it: the client was closed (by another thread) meanwhile.
            raise ConfigurationError(f"{_CLOSED} (it was closed during this call)") from None
    if call.carried is not None:  # raised as the call was ending anyway
        raise call.carried
    return result


def _defers_ctrl_c_to_a_loop(handler: object) -> bool:
    """Whether ``handler`` is asyncio's ``Runner`` handler (``asyncio.run``, Python 3.11+).

    It only cancels the main task, which sits in a blocking call and cannot notice
    until that call returns: Ctrl-C would wait for the whole call, then discard it.
    """
    runner = getattr(asyncio, "Runner", None)
    on_sigint = getattr(runner, "_on_sigint", None)
    if on_sigint is None or not isinstance(handler, functools.partial):
        return False
    return getattr(handler.func, "__func__", None) is on_sigint


@contextlib.contextmanager
def _ctrl_c_interrupts() -> Iterator[None]:
    """While this thread waits, Ctrl-C raises `KeyboardInterrupt` here, as in a plain script.

    Only in the main thread (where signal handlers run) and only in place of asyncio's
    own handler (a sync call inside ``asyncio.run``); a handler the application chose is
    left alone. Restored as the wait ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not _defers_ctrl_c_to_a_loop(previous):
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous)


async def _feed(
    open_stream: Callable[[], AsyncGenerator[T, None]], out: ObjectSendStream[T]
) -> None:
    """Iterate the async stream in one task (its task groups span its yields), handing on each."""
    async with out, contextlib.aclosing(open_stream()) as items:
        async for item in items:
            await out.send(item)  # no buffer: waits for the consumer, which paces the work


def _abandon(
    running: _Running,
    producer: _Call[None],
    receive: MemoryObjectReceiveStream[T],
    done: concurrent.futures.Future[None],
) -> None:
    """Stop an iterator's producer that is still running, from wherever the iterator ended.

    In the consumer's thread (``break``, ``close()``, Ctrl-C) this waits until the producer
    has ended. An iterator the garbage collector frees may end in any thread, the loop's own
    included (a reference cycle collected during a callback): that thread cannot wait for
    work only it can run, so there the producer is told to stop and left to it. In a forked
    child the loop, and the producer, are the parent's: nothing to stop.
    """
    if running.pid != os.getpid() or running.loop is None or running.portal is None:
        return
    if threading.current_thread() is running.thread:
        done.add_done_callback(lambda _: receive.close())
        with contextlib.suppress(RuntimeError):  # the loop has already closed
            running.loop.call_soon(producer.cancel)
        return
    with contextlib.suppress(RuntimeError):  # the portal stopped meanwhile
        running.portal.call(producer.cancel)
    concurrent.futures.wait([done])
    receive.close()


class _Running:
    """The parts of a started loop thread, and the process that started it."""

    def __init__(self, on_close: Callable[[], Awaitable[None]]) -> None:
        self.pid = os.getpid()
        self.on_close = on_close
        self.portal: BlockingPortal | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_requested: anyio.Event | None = None
        self.failure: BaseException | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="convoso-sync-loop", daemon=True)

    def _serve(self) -> None:
        try:
            anyio.run(self._main, backend="asyncio")
        except BaseException as exc:
            if self.ready.is_set():
                raise
            self.failure = exc
            self.ready.set()

    def discard(self) -> None:
        """Stop this loop, which never served a call, without closing the client's pool."""
        self.on_close = _nothing
        self.request_stop()

    async def _main(self) -> None:
        async with BlockingPortal() as portal:
            self.loop = asyncio.get_running_loop()
            self.stop_requested = anyio.Event()
            self.portal = portal
            self.ready.set()
            await self.stop_requested.wait()
            await portal.stop(cancel_remaining=True)
        # Every call has ended: close the pool's connections here, in the loop they belong to.
        await self.on_close()

    def request_stop(self) -> None:
        """Ask the loop to wind down (from any thread, without waiting); not in a forked child."""
        if self.pid != os.getpid() or self.loop is None or self.stop_requested is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has already closed
            self.loop.call_soon_threadsafe(self.stop_requested.set)


async def _nothing() -> None:
    pass


class LoopThread:
    """The event loop a `Convoso` family runs on: started on first use, stopped by `close`.

    ``on_close`` closes the client's pool; it runs in the loop as the loop stops.
    """

    def __init__(self, on_close: Callable[[], Awaitable[None]]) -> None:
        self._on_close = on_close
        # Reentrant: a signal handler that uses the client runs in the thread it interrupts,
        # which may hold this lock (in a call's setup).
        self._lock = threading.RLock()
        #: The started loop, once there is one: its first item (see `_start`).
        self._started_loops: list[_Running] = []
        self._closed = False
        self._finalizer: weakref.finalize[[], LoopThread] | None = None
        _LOOPS.add(self)

    @property
    def _running(self) -> _Running | None:
        return self._started_loops[0] if self._started_loops else None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "idle" if self._running is None else "running"
        return f"<LoopThread {state}>"

    def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work()`` in the loop; its result, or what it raised, in this thread."""
        return _wait(self._portal(), work)

    def iterate(self, open_stream: Callable[[], AsyncGenerator[T, None]]) -> Iterator[T]:
        """The items of the async generator ``open_stream()``, as a plain iterator.

        Lazy: nothing starts until the first item is asked for. The generator
        runs in one task of the loop and hands over one item at a time. Closed
        early (``break``, ``close()``, Ctrl-C), it is cancelled at once and this
        waits until it has ended.
        """
        running = self._started()
        portal = running.portal
        assert portal is not None
        send, receive = anyio.create_memory_object_stream[T](max_buffer_size=0)
        producer = _Call(lambda: _feed(open_stream, send))
        done = portal.start_task_soon(producer.run)
        try:
            while True:
                try:
                    item = _wait(portal, receive.receive)
                except anyio.EndOfStream:
                    break
                yield item
            done.result()  # what stopped the stream early, if anything (a bad argument, say)
        finally:
            if done.done():
                receive.close()
            else:
                _abandon(running, producer, receive, done)

    def close(self) -> None:
        """Cancel the calls still running, close the client's pool, stop the thread.

        Safe to call more than once, from any thread. In a forked child, only
        marks the loop closed: the thread and connections are the parent's.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            running = self._running
        if running is None or running.pid != os.getpid():
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        running.request_stop()
        if threading.current_thread() is not running.thread:  # not from a callback of its own
            running.thread.join(STOP_TIMEOUT)

    def _portal(self) -> BlockingPortal:
        portal = self._started().portal
        assert portal is not None
        return portal

    def _started(self) -> _Running:
        if sys.is_finalizing():  # daemon threads, the loop's among them, are frozen for good
            raise ConfigurationError(_SHUTTING_DOWN)
        with self._lock:
            if self._closed:
                raise ConfigurationError(_CLOSED)
            running = self._running
            if running is None:
                running = self._start()
        if running.pid != os.getpid():
            raise ConfigurationError(
                f"this Convoso was first used in process {running.pid}, and this is a child "
                f"forked from it ({os.getpid()}): its event loop thread and connections stayed "
                "in the parent. Create the Convoso in the child (Celery: in the task, or a "
                "worker_process_init handler), or create it before the fork and use it only "
                "in the children"
            )
        if threading.current_thread() is running.thread:
            raise RuntimeError(
                "a Convoso call from inside one of its own callbacks (on_progress, "
                "on_interrupt) would wait for itself: record what you need and call after"
            )
        return running

    def _start(self) -> _Running:
        fresh = _Running(self._on_close)
        fresh.thread.start()
        if not fresh.ready.wait(START_TIMEOUT):
            raise RuntimeError(f"the Convoso event loop thread did not start in {START_TIMEOUT}s")
        if fresh.failure is not None:
            raise fresh.failure
        # A signal handler in this thread may have started one meanwhile (while this waited,
        # or at any instruction before): the first one kept is the loop, whichever it is. The
        # append is one step no handler can come between.
        self._started_loops.append(fresh)
        running = self._started_loops[0]
        if running is not fresh:
            fresh.discard()
            del self._started_loops[1:]
            return running
        # Nobody refers to this loop any more (every client and copy is gone): wind it down.
        self._finalizer = weakref.finalize(self, running.request_stop)
        self._finalizer.atexit = False
        return running
