"""The bulk executor: one async operation over many keys, bounded, one outcome per key.

It knows nothing about campaigns. ``max_concurrency`` workers share one
iterator of the unique keys, so at most that many operations are in flight,
memory stays flat however many keys there are, and cancelling the caller stops
new work at once: the task group cancels the workers, and no key is started
after that. A failing operation becomes that key's outcome; it never stops
the others. Works on asyncio and trio (anyio).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Iterable
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
import attrs

__all__ = ["Outcome", "run_all", "stream", "unique"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@attrs.frozen
class Outcome(Generic[K, T]):
    """What happened to one key: its value, or the exception its operation raised."""

    key: K
    value: T | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def unique(keys: Iterable[K]) -> list[K]:
    """The keys without repeats, in first-seen order."""
    return list(dict.fromkeys(keys))


async def _outcome(operation: Callable[[K], Awaitable[T]], key: K) -> Outcome[K, T]:
    try:
        return Outcome(key, await operation(key))
    except Exception as error:  # one key's failure is its outcome, never the batch's
        return Outcome(key, error=error)


async def _work(
    keys: Iterable[K],
    operation: Callable[[K], Awaitable[T]],
    max_concurrency: int,
    deliver: Callable[[Outcome[K, T]], Awaitable[None] | None],
) -> None:
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
    todo = unique(keys)
    pending = iter(todo)

    async def worker() -> None:
        for key in pending:  # shared iterator: each key is taken by exactly one worker
            # An operation that finished in the same tick as a cancel must not
            # let its worker start the next key.
            await anyio.lowlevel.checkpoint_if_cancelled()
            delivered = deliver(await _outcome(operation, key))
            if delivered is not None:
                # Waits while the consumer is behind: this worker takes no new key.
                await delivered

    try:
        async with anyio.create_task_group() as group:
            for _ in range(min(max_concurrency, len(todo))):
                group.start_soon(worker)
    except BaseException as error:
        chosen = _unwrapped(error)
        if chosen is error:
            raise
        raise chosen from None


def _unwrapped(error: BaseException) -> BaseException:
    """What the workers raised, as itself rather than in the task group's exception group.

    An operation's exception is its key's outcome, so what reaches the task group came from
    a ``deliver`` callback: an application's exit (``SystemExit``, its own ``BaseException``)
    or error. Several workers may raise it before the group cancels them; the caller gets the
    first one that is not a cancellation, so ``except SystemExit`` works as around any call.
    """
    members: tuple[BaseException, ...] = getattr(error, "exceptions", ())
    if not members:
        return error
    cancelled = anyio.get_cancelled_exc_class()
    chosen = next((member for member in members if not isinstance(member, cancelled)), members[0])
    return _unwrapped(chosen)


async def run_all(
    keys: Iterable[K],
    operation: Callable[[K], Awaitable[T]],
    *,
    max_concurrency: int,
    on_outcome: Callable[[Outcome[K, T]], None] | None = None,
) -> list[Outcome[K, T]]:
    """Run ``operation`` once per unique key, at most ``max_concurrency`` at a time.

    Returns the outcomes in completion order; ``on_outcome`` sees each as it
    happens (so a caller that is cancelled midway still saw every finished one).
    """
    outcomes: list[Outcome[K, T]] = []

    def record(outcome: Outcome[K, T]) -> None:
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    await _work(keys, operation, max_concurrency, record)
    return outcomes


async def stream(
    keys: Iterable[K],
    operation: Callable[[K], Awaitable[T]],
    *,
    max_concurrency: int,
) -> AsyncGenerator[Outcome[K, T], None]:
    """Like `run_all`, yielding each outcome as it completes, at the consumer's pace.

    Backpressure: a worker hands its outcome straight to the consumer (no
    buffer) and takes no new key until the consumer took it, so at most
    ``max_concurrency`` outcomes wait, and a slow consumer slows the work.

    To stop early, close the iterator in the task that iterates it
    (``async with contextlib.aclosing(stream(...)) as outcomes``): the
    in-flight operations are cancelled and nothing new starts.
    """
    send, receive = anyio.create_memory_object_stream[Outcome[K, T]](max_buffer_size=0)

    async def produce() -> None:
        async with send:
            await _work(keys, operation, max_concurrency, send.send)

    # The receiving end closes only after the workers are gone, so a worker
    # finishing as the consumer leaves never sends into a closed stream.
    with receive:
        async with anyio.create_task_group() as group:
            group.start_soon(produce)
            try:
                async for outcome in receive:
                    yield outcome
            except GeneratorExit:
                # The consumer closed us early: cancel the work and end quietly
                # (letting GeneratorExit through the task group would wrap it).
                group.cancel_scope.cancel()
