"""`Convoso`: the synchronous client, for scripts, Django views, Celery tasks and notebooks.

It holds one `AsyncConvoso` and runs it on an event loop of its own thread
(`LoopThread`); every method is the async client's, blocking. Nothing here
sends, retries, paces or accounts: `blocking` and `streaming` turn an async
method into its blocking form, with the same signature, result and errors, so
the two clients cannot drift apart.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar

import httpx2

from convoso_async._client import AsyncConvoso
from convoso_async._defaults import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
)
from convoso_async._http.pool import Transport
from convoso_async._options import OptionsView
from convoso_async._pacing.breaker import CircuitBreaker, RetryBudget
from convoso_async._pacing.ratelimit import RateLimiter
from convoso_async._resources.campaigns import Campaigns

from .loop import LoopThread, raised_in_caller

__all__ = ["Convoso", "SyncCampaigns"]

P = ParamSpec("P")
T = TypeVar("T")
Target = TypeVar("Target")


class _Blocking(Generic[Target]):
    """What a blocking face holds: the async object it stands for, and the loop that runs it."""

    def __init__(self, target: Target, loop: LoopThread) -> None:
        self._target = target
        self._loop = loop


def _document(
    blocking_method: Callable[..., Any], method: Callable[..., Any], returns: str
) -> None:
    """Give ``blocking_method`` the async method's name, parameters and documentation."""
    functools.update_wrapper(blocking_method, method)
    shown = inspect.signature(method)
    blocking_method.__signature__ = shown.replace(  # type: ignore[attr-defined]
        return_annotation=returns or shown.return_annotation
    )
    blocking_method.__doc__ = (
        f"``{method.__qualname__}``, blocking: the same arguments, result and errors.\n\n"
        + inspect.cleandoc(method.__doc__ or "")
    )


def blocking(
    method: Callable[Concatenate[Target, P], Awaitable[T]],
) -> Callable[Concatenate[_Blocking[Target], P], T]:
    """The blocking form of an async method: runs it in the loop, waits, returns its result."""

    def call(self: _Blocking[Target], /, *args: P.args, **kwargs: P.kwargs) -> T:
        for name, value in kwargs.items():
            if name.startswith("on_") and callable(value):  # on_progress, on_interrupt
                kwargs[name] = raised_in_caller(value)
        return self._loop.run(functools.partial(method, self._target, *args, **kwargs))

    _document(call, method, returns="")
    return call


def streaming(
    method: Callable[Concatenate[Target, P], AsyncGenerator[T, None]],
) -> Callable[Concatenate[_Blocking[Target], P], Iterator[T]]:
    """The blocking form of an async generator method: a plain iterator of its items."""

    def call(self: _Blocking[Target], /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._loop.iterate(functools.partial(method, self._target, *args, **kwargs))

    generated = str(inspect.signature(method).return_annotation)  # "AsyncGenerator[X, None]"
    _document(call, method, returns=f"Iterator[{generated.partition('[')[2].rpartition(',')[0]}]")
    return call


def _copying(
    method: Callable[Concatenate[AsyncConvoso, P], AsyncConvoso],
) -> Callable[Concatenate[Convoso, P], Convoso]:
    """``with_options`` of the blocking client, from the async client's (its options and rules)."""

    def with_options(self: Convoso, /, *args: P.args, **kwargs: P.kwargs) -> Convoso:
        twin = copy.copy(self)
        twin._hold(method(self._target, *args, **kwargs), self._loop, owner=False)
        return twin

    _document(with_options, method, returns="Convoso")
    with_options.__doc__ = (
        "A copy with the options given changed, as ``AsyncConvoso.with_options`` makes one "
        "(the same options and rules).\n\n"
        "    patient = convoso.with_options(timeout=120, max_retries=8)\n\n"
        "The copy shares this client's event loop thread, connection pool and 429 pause "
        "(and, unless given, its limiter, budget and breaker). Closing a copy does nothing; "
        "closing the original closes them for every copy."
    )
    return with_options


class SyncCampaigns(_Blocking[Campaigns]):
    """``convoso.campaigns`` of a `Convoso`: the calls of `AsyncConvoso`'s, blocking::

    active = [c for c in convoso.campaigns.search() if c.is_active]
    result = convoso.campaigns.set_status_many(["111", "222"], False)
    for outcome in convoso.campaigns.iter_set_status(["111", "222"], True):
        print(outcome.campaign_id, "ok" if outcome.ok else outcome.error)
    """

    search = blocking(Campaigns.search)
    set_status = blocking(Campaigns.set_status)
    activate = blocking(Campaigns.activate)
    deactivate = blocking(Campaigns.deactivate)
    set_status_many = blocking(Campaigns.set_status_many)
    apply_statuses = blocking(Campaigns.apply_statuses)
    iter_set_status = streaming(Campaigns.iter_set_status)


class Convoso(_Blocking[AsyncConvoso], OptionsView):
    """A synchronous client for the Convoso API: `AsyncConvoso`'s options, calls and errors.

        with Convoso() as convoso:                      # token from CONVOSO_AUTH_TOKEN
            campaigns = convoso.campaigns.search()
            result = convoso.campaigns.set_status_many(["111", "222"], False)

    It runs one `AsyncConvoso` on an event loop in a background thread,
    started on the first call: it works in a plain script, in a thread that
    runs an event loop of its own (a notebook cell), and from many threads at
    once, all sharing one connection pool, rate limiter, 429 pause, retry
    budget and circuit breaker. Ctrl-C during a call (a bulk change too)
    cancels it as it would cancel the async call (audit lines,
    ``on_interrupt``), then raises `KeyboardInterrupt`. In a child forked
    after the client was first used (Celery's prefork pool), a call raises
    `ConfigurationError`: create the client in the child, or before the fork
    without using it. Callbacks (``on_progress``, ``on_interrupt``) run in the
    client's own thread. Use it as ``with Convoso() as convoso:``, or call
    `close` when done. The options are `AsyncConvoso`'s, checked as it checks them
    (one `Options` object, which its properties read).
    """

    campaigns: SyncCampaigns

    def __init__(
        self,
        auth_token: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        rate_limit: float | Literal["auto"] | RateLimiter | None = None,
        http_client: httpx2.AsyncClient | Any | None = None,
        retry_budget: RetryBudget | bool = True,
        circuit_breaker: CircuitBreaker | bool = True,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: Transport = "httpx2",
    ) -> None:
        # The same keywords as AsyncConvoso's (tests/test_sync_client.py pins them), passed on.
        arguments = dict(locals())
        del arguments["self"]
        client = AsyncConvoso(**arguments)
        self._hold(client, LoopThread(client.aclose), owner=True)

    def _hold(self, client: AsyncConvoso, loop: LoopThread, *, owner: bool) -> None:
        super().__init__(client, loop)
        self._owner = owner
        self._options = client._options  # the properties read it (`OptionsView`)
        self.campaigns = SyncCampaigns(client.campaigns, loop)

    post = blocking(AsyncConvoso.post)

    with_options = _copying(AsyncConvoso.with_options)

    @property
    def base_url(self) -> str:
        """The API root requests go to."""
        return self._target.base_url

    def close(self) -> None:
        """Close the connection pool and stop the event loop thread (a copy: nothing).

        Calls still running in other threads are cancelled; later calls raise
        `ConfigurationError`. A caller's ``http_client`` stays open.
        """
        if self._owner:
            self._loop.close()

    def __enter__(self) -> Convoso:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return "Convoso" + repr(self._target).removeprefix("AsyncConvoso")


# Public names report the package, where users import them from (as httpx's do).
Convoso.__module__ = "convoso_async"
