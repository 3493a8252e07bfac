"""`SharedLock`, the lock the in-process limiters queue on, on its own: mutual exclusion and
first come, first served within a loop and across loops in several threads (asyncio and trio),
and cancellation that leaves no trace."""

from __future__ import annotations

import asyncio
import threading
import time

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
import trio
import trio.testing

from convoso_async._pacing.sharedlock import SharedLock

pytestmark = pytest.mark.timeout(30, method="thread")


@pytest.mark.anyio
async def test_waiters_take_the_lock_first_come_first_served() -> None:
    lock = SharedLock()
    order: list[int] = []

    async def take(number: int) -> None:
        async with lock:
            order.append(number)

    await lock.acquire()
    async with anyio.create_task_group() as group:
        for number in range(5):
            group.start_soon(take, number)
            await anyio.wait_all_tasks_blocked()  # each queues before the next starts
        assert order == []
        lock.release()
    assert order == [0, 1, 2, 3, 4]
    assert "unlocked, 0 waiting" in repr(lock)


@pytest.mark.anyio
async def test_a_cancelled_waiter_leaves_no_trace() -> None:
    lock = SharedLock()
    await lock.acquire()
    with anyio.move_on_after(0.05):
        await lock.acquire()
    assert "locked, 0 waiting" in repr(lock)
    lock.release()
    with anyio.fail_after(5):
        async with lock:
            pass


@pytest.mark.anyio
async def test_a_waiter_cancelled_as_it_is_handed_the_lock_hands_it_on() -> None:
    lock = SharedLock()
    got: list[str] = []
    await lock.acquire()
    with anyio.fail_after(5):  # a lock lost with the cancelled task would leave `second` waiting
        async with anyio.create_task_group() as group:
            scope = anyio.CancelScope()

            async def first() -> None:
                with scope:
                    await lock.acquire()
                    got.append("first")  # never: cancelled before it was woken
                    lock.release()

            async def second() -> None:
                async with lock:
                    got.append("second")

            group.start_soon(first)
            await anyio.wait_all_tasks_blocked()
            group.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()  # `first` is cancelled, but has not run yet: it is still queued...
            lock.release()  # ...so it is handed the lock, and must hand it on to `second`
    assert got == ["second"]
    assert "unlocked, 0 waiting" in repr(lock)


def _run_in_thread(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


@pytest.mark.parametrize("second_backend", ["asyncio", "trio"])
def test_tasks_of_loops_in_several_threads_exclude_each_other(second_backend: str) -> None:
    lock = SharedLock()
    inside = 0
    most = 0
    entries = 0
    guard = threading.Lock()

    async def work() -> None:
        nonlocal inside, most, entries

        async def one() -> None:
            nonlocal inside, most, entries
            for _ in range(50):
                async with lock:
                    with guard:
                        inside += 1
                        most = max(most, inside)
                        entries += 1
                    await anyio.lowlevel.checkpoint()  # another task of this loop could get in
                    time.sleep(0.0002)  # noqa: ASYNC251  (holding it: other threads' loops try)
                    with guard:
                        inside -= 1

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(one)

    threads = [
        _run_in_thread(lambda: asyncio.run(work())),
        _run_in_thread(lambda: anyio.run(work, backend=second_backend)),
        _run_in_thread(lambda: asyncio.run(work())),
    ]
    for thread in threads:
        thread.join(25)
        assert not thread.is_alive(), "a task waited on the shared lock for ever"
    assert most == 1
    assert entries == 3 * 4 * 50


def test_a_waiter_whose_loop_has_closed_is_skipped() -> None:
    lock = SharedLock()
    gone = asyncio.new_event_loop()
    task = gone.create_task(lock.acquire())

    async def hold() -> None:
        await lock.acquire()
        # Another loop queues a waiter, then closes with it still queued (never cancelled).
        await anyio.to_thread.run_sync(gone.run_until_complete, asyncio.sleep(0.01))
        assert "1 waiting" in repr(lock)
        await anyio.to_thread.run_sync(gone.close)
        lock.release()  # its loop cannot be woken: skipped, not handed the lock for ever
        with anyio.fail_after(5):
            async with lock:
                pass

    asyncio.run(hold())
    assert "unlocked, 0 waiting" in repr(lock)
    assert not task.done()


def test_trio_token_is_used_under_trio() -> None:
    lock = SharedLock()

    async def main() -> None:
        await lock.acquire()
        async with trio.open_nursery() as nursery:

            async def waiter() -> None:
                async with lock:
                    pass

            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            lock.release()

    trio.run(main)
    assert "unlocked, 0 waiting" in repr(lock)
