"""`AsyncConvoso`: configuration, the connection pool, and the resources.

The client checks its options once into one `Options` object (`._options`),
makes one connection pool (`._http.pool`: HTTP clients of its own per event
loop, or the caller's ``http_client``), and hands every request to the
pipeline. Copies made with `with_options` (`attrs.evolve` of the options)
share the pool, the 429 pause and whatever limiter, budget and breaker they
were not given.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar

import attrs
import httpx2

from . import _telemetry as telemetry
from ._checks import check_base_url, check_flag, check_token
from ._defaults import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    ENV_AUTH_TOKEN,
    ENV_BASE_URL,
)
from ._errors import ConfigurationError
from ._http.endpoint import Endpoint, Reply, as_is
from ._http.families import family_of
from ._http.pipeline import Pipeline
from ._http.pool import Pool, Transport
from ._log import configure_from_env
from ._options import Options, OptionsView
from ._pacing.breaker import CircuitBreaker, RetryBudget
from ._pacing.ratelimit import PauseGate, RateLimiter
from ._redaction import redact_url
from ._resources.campaigns import Campaigns
from ._resources.endpoints import FieldValue, check_path, form_fields

__all__ = ["AsyncConvoso"]

T = TypeVar("T")


class NotGiven:
    """The default of `AsyncConvoso.with_options`: "keep this client's", where None means none."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN = NotGiven()


class AsyncConvoso(OptionsView):
    """An async client for the Convoso API.

        async with AsyncConvoso() as convoso:          # token from CONVOSO_AUTH_TOKEN
            campaigns = await convoso.campaigns.search()
            result = await convoso.campaigns.set_status_many(["111", "222"], False)

    Args:
        auth_token: the API token; defaults to the ``CONVOSO_AUTH_TOKEN`` variable.
            It is sent in the form body only, never in a URL, log line or repr.
        base_url: the API root; defaults to ``CONVOSO_BASE_URL``, then Convoso's public URL.
        timeout: seconds allowed for each HTTP attempt.
        max_retries: retries after the first attempt (0 disables retrying).
        max_concurrency: status requests in flight at once in bulk work; the
            client's own connection pool is this size.
        rate_limit: ``None`` (no pacing), requests per second, ``"auto"``
            (an `AdaptiveLimiter`: starts at 10/s and finds the account's
            limit from the 429s it meets), or a limiter object with ``async
            acquire()`` (e.g. `RedisRateLimiter`), shared by every request of
            the client, retries included.
        http_client: your own ``httpx2.AsyncClient`` (or old ``httpx.AsyncClient``),
            used as given (its transport, proxies, hooks and mocks apply) and never closed.
        retry_budget: ``True`` (default: a `RetryBudget` of 50 retries, each
            success giving back half of one), your own `RetryBudget`, or
            ``False`` to retry every failure up to ``max_retries``.
        circuit_breaker: ``True`` (default: a `CircuitBreaker` opening after
            max(10, 2 x ``max_concurrency``) network failures, timeouts or 5xx
            in a row, probing again after 5 s), your own `CircuitBreaker`, or
            ``False`` for none. Both are
            shared by every ``with_options`` copy and every concurrent batch.
        max_response_bytes: the largest answer read (as sent, and once
            decompressed); a larger one stops being read, its connection is
            closed, and the call raises `ResponseDecodeError`. Shared by
            `with_options` copies.
        transport: how the client's own pool sends: ``"httpx2"`` (default: a
            stock ``httpx2.AsyncClient``), or ``"aiohttp"`` (the ``aiohttp``
            extra: about half the CPU per request, for CPU-bound bulk work;
            behaves as httpx2 and steps aside to it on trio, behind a proxy
            and while a mocking tool patches httpx2).

    Raises:
        ConfigurationError: no token, or an option out of range.
    """

    campaigns: Campaigns

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
        configure_from_env()
        token = check_token(
            auth_token if auth_token is not None else os.environ.get(ENV_AUTH_TOKEN)
        )
        root = check_base_url(base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL)
        _check_http_client(http_client)
        transport = _check_transport(transport, http_client)
        options = Options(
            timeout=timeout,
            max_retries=max_retries,
            max_concurrency=max_concurrency,
            max_response_bytes=max_response_bytes,
            rate_limit=rate_limit,
            retry_budget=retry_budget,
            circuit_breaker=circuit_breaker,
        )
        self._pool = Pool(http_client, options.max_concurrency, base_url=root, transport=transport)
        self._owner = True  # closes the pool; its copies do not
        self._read(
            options, Pipeline(base_url=root, auth_token=token, pause=PauseGate(), options=options)
        )

    def _read(self, options: Options, pipeline: Pipeline) -> None:
        """Hold ``options`` (the properties and requests read them) and a pipeline reading them."""
        self._options = options
        self._pipeline = pipeline
        self.campaigns = Campaigns(self)

    @property
    def base_url(self) -> str:
        """The API root requests go to, as given (any ``user:password@`` in it included).

        The client shows it (``repr``, errors, telemetry) with the password as ``***``.
        """
        return self._pipeline.base_url

    def with_options(
        self,
        *,
        timeout: float | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        max_concurrency: int | NotGiven = NOT_GIVEN,
        rate_limit: float | Literal["auto"] | RateLimiter | NotGiven | None = NOT_GIVEN,
        retry_budget: RetryBudget | bool | NotGiven = NOT_GIVEN,
        circuit_breaker: CircuitBreaker | bool | NotGiven = NOT_GIVEN,
        max_response_bytes: int | NotGiven = NOT_GIVEN,
    ) -> AsyncConvoso:
        """A copy with the options given changed; the others as this client has them.

            patient = convoso.with_options(timeout=120, max_retries=8)
            unpaced = convoso.with_options(rate_limit=None)

        The copy shares this client's connection pool (and its size), the 429
        pause, and, unless the option is given, its rate limiter, retry budget
        and circuit breaker: ``rate_limit=None`` gives the copy no limiter,
        ``retry_budget=False`` none, a number or ``True`` a new one of its
        own. Every option is checked as the constructor checks it. Closing a
        copy does nothing; closing the original closes the pool for every copy.
        The token, base URL, ``http_client`` and ``transport`` belong to the
        pool, so a copy cannot change them: make another client for those.
        """
        # Every keyword here is an Options field (tests/test_option_checks.py pins it).
        arguments = dict(locals())
        given = {
            name: value
            for name, value in arguments.items()
            if name != "self" and not isinstance(value, NotGiven)
        }
        options = attrs.evolve(self._options, **given)
        twin = copy.copy(self)  # the same pool, not its owner
        twin._owner = False
        twin._read(options, self._pipeline.with_options(options))
        return twin

    async def post(
        self,
        path: str,
        fields: Mapping[str, FieldValue] | None = None,
        *,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        """POST to any Convoso endpoint; the JSON object it answers, decoded.

            found = await convoso.post("/leads/search", {"list_id": "5", "limit": 10})

        The same pipeline as the campaign calls: the token in the form body only,
        the rate limiter, the 429 pause, the retry budget and circuit breaker, and
        a ``success: false`` answer raised as the error tree (`AuthenticationError`,
        `PermissionDeniedError`, ... for known codes and wordings, else an
        `APIError` with Convoso's ``code``). Retried only when the request cannot
        have been processed (no connection was made, HTTP 429, or 503 with
        ``Retry-After``), since sending an insert twice may insert twice; pass
        ``idempotent=True`` for a call that is safe to repeat (a search, a set),
        to retry it as the campaign calls are (timeouts, resets, 5xx too).

        Args:
            path: the endpoint below the base URL, such as ``"/leads/search"``.
            fields: the form fields; ``str``, ``int``, finite ``float`` or
                ``bool`` (sent ``true``/``false``) values. Never ``auth_token``.
            idempotent: whether sending the request twice does no more than once.

        Raises:
            TypeError, ValueError: a bad path or field, before anything is sent.
            ConfigurationError: ``idempotent`` is not a bool.
            ConvosoError: the call failed (see the error tree).
        """
        target = check_path(path, self.base_url)
        form = form_fields(fields)
        endpoint = Endpoint(target, idempotent=check_flag("idempotent", idempotent), decode=as_is)
        with telemetry.api_call("convoso.post", endpoint=target):
            return (await self._call(endpoint, form)).unwrap()

    async def _call(self, endpoint: Endpoint[T], fields: dict[str, str]) -> Reply[T]:
        """One call of ``endpoint`` through the pipeline: the port every resource sends by.

        The retry policy is the endpoint's (an endpoint that is not idempotent is
        retried only when the request cannot have been processed). A failure
        comes back as the reply's ``error``, with the attempts it took.
        """
        return await self._pipeline.post(
            self._pool,
            endpoint,
            fields,
            time_limit=self._options.timeout,
            max_bytes=self._options.max_response_bytes,
            policy=self._options.retry_policy
            if endpoint.idempotent
            else self._options.careful_policy,
        )

    async def aclose(self) -> None:
        """Close the connection pool the client made (a caller's ``http_client`` stays open)."""
        if self._owner:
            await self._pool.aclose()

    async def __aenter__(self) -> AsyncConvoso:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        options = self._options
        return (
            f"AsyncConvoso(base_url={redact_url(self.base_url)!r}, timeout={options.timeout:g}, "
            f"max_retries={options.max_retries}, max_concurrency={options.max_concurrency}, "
            f"rate_limit={options.rate_limiter!r})"
        )


def _check_http_client(http_client: object) -> None:
    if http_client is not None and family_of(http_client) is None:
        raise ConfigurationError(
            "http_client must be an httpx2.AsyncClient or an httpx.AsyncClient, "
            f"not {type(http_client).__name__}"
        )


def _check_transport(transport: object, http_client: object) -> Transport:
    if transport == "httpx2":
        return "httpx2"
    if transport != "aiohttp":
        raise ConfigurationError(
            f'transport must be "httpx2" (the default) or "aiohttp", not {transport!r}; '
            "for a transport of your own, pass http_client=httpx2.AsyncClient(transport=...)"
        )
    if http_client is not None:
        raise ConfigurationError(
            'transport="aiohttp" makes the client\'s own pool; it cannot apply to your '
            "http_client, which is used as given"
        )
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "transport=\"aiohttp\" needs aiohttp: pip install 'convoso-async[aiohttp]'"
        ) from None
    return "aiohttp"


# A public name reports the package, where users import it from (as httpx's do).
AsyncConvoso.__module__ = "convoso_async"
