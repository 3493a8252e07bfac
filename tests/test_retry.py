"""The retry policy: Retry-After parsing, backoff bounds, the testing switch."""

from __future__ import annotations

import datetime as dt
import time

import httpx
import pytest
import respx

import convoso_async
from convoso_async import APIError, AsyncConvoso, CircuitBreaker, RateLimitError, RetryBudget
from convoso_async._defaults import RETRY_AFTER_CAP
from convoso_async._errors import APIConnectionError, APIStatusError, APITimeoutError, ServerError
from convoso_async._pacing.breaker import Guard
from convoso_async._pacing.retry import RetryPolicy, is_retryable, is_testing, parse_retry_after

NOW = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        ("0", 0.0),
        (" 1.5 ", 1.5),
        ("-5", 0.0),
        ("inf", RETRY_AFTER_CAP),
        ("1e309", RETRY_AFTER_CAP),
        ("86400", RETRY_AFTER_CAP),
        ("nan", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("Fri, 27 Nov 2026 12:00:10 GMT", 10.0),
        ("Fri, 27 Nov 2026 11:00:00 GMT", 0.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", RETRY_AFTER_CAP),
        ("Mon, 99 Foo 2026 99:99:99 GMT", None),
    ],
)
def test_retry_after_is_parsed_capped_and_sanitised(
    header: str | None, expected: float | None
) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_backoff_is_full_jitter_within_the_exponential_cap() -> None:
    policy = RetryPolicy(5, initial_backoff=0.5, max_backoff=3.0)
    error = ServerError(503)
    for retry_number, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        samples = [policy.delay(error, retry_number) for _ in range(400)]
        assert all(0.0 <= s <= ceiling for s in samples)
        # Full jitter spreads over the whole range, not only near the ceiling.
        assert min(samples) < ceiling * 0.2
        assert max(samples) > ceiling * 0.8


def test_retry_after_replaces_the_backoff() -> None:
    # (Capped once, where the header is read: see the parse_retry_after cases above.)
    policy = RetryPolicy(3)
    assert policy.delay(RateLimitError(429, retry_after=4.0), 1) == 4.0
    assert policy.delay(ServerError(503, retry_after=30.0), 3) == 30.0


def test_next_wait_is_the_one_decision_about_another_attempt() -> None:
    policy = RetryPolicy(2)
    assert policy.next_wait(APIError("nope", code=6001), 1) is None  # success: false
    assert policy.next_wait(APIStatusError(404), 1) is None  # any other 4xx
    assert policy.next_wait(ServerError(503, retry_after=3.0), 1) == 3.0
    assert policy.next_wait(RateLimitError(429, retry_after=1.0), 2) == 1.0
    assert policy.next_wait(ServerError(503), 3) is None  # the retries are used up
    with convoso_async.set_testing():
        assert policy.next_wait(APIConnectionError("reset"), 1) == 0.0


def test_next_wait_asks_the_guard_last_so_a_refusal_costs_no_token() -> None:
    budget = RetryBudget(tokens=1, refill=0)
    guard = Guard(budget, CircuitBreaker(failure_threshold=50))
    policy = RetryPolicy(1)
    assert policy.next_wait(ServerError(503), 2, guard) is None  # past max_retries: not asked
    assert budget.tokens == 1
    assert policy.next_wait(ServerError(503), 1, guard) is not None  # takes the token
    assert policy.next_wait(ServerError(503), 1, guard) is None  # none left
    assert policy.next_wait(RateLimitError(429), 1, guard) is not None  # 429s cost nothing
    assert budget.tokens == 0


def test_set_testing_makes_every_wait_zero() -> None:
    policy = RetryPolicy(3)
    with convoso_async.set_testing():
        assert policy.delay(RateLimitError(429, retry_after=30.0), 1) == 0.0
        assert policy.delay(ServerError(503), 3) == 0.0
    assert policy.delay(RateLimitError(429, retry_after=30.0), 1) == 30.0


def failing_test_body() -> None:
    with convoso_async.set_testing():
        assert is_testing()
        with convoso_async.set_testing(False):
            assert not is_testing()
        assert is_testing()  # the inner block put back the outer one's setting
        raise RuntimeError("a failing test")


def test_set_testing_restores_the_previous_setting_even_when_the_block_fails() -> None:
    assert not is_testing()
    with pytest.raises(RuntimeError):
        failing_test_body()
    assert not is_testing()


def test_set_testing_called_without_with_stays_until_called_again() -> None:
    convoso_async.set_testing(True)
    try:
        assert is_testing()
    finally:
        convoso_async.set_testing(False)
    assert not is_testing()


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (APIConnectionError("reset"), True),
        (APITimeoutError("slow"), True),
        (RateLimitError(429), True),
        (ServerError(500), True),
        (ServerError(502), True),
        (ServerError(503), True),
        (ServerError(504), True),
        (ServerError(501), False),
        (APIStatusError(404), False),
        (APIStatusError(400), False),
        (APIError("Campaign not found"), False),
        (ValueError("bug"), False),
    ],
)
def test_only_network_failures_and_429_5xx_are_retried(error: BaseException, retried: bool) -> None:
    assert is_retryable(error) is retried


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (APIConnectionError("refused", never_connected=True), True),
        (APITimeoutError("connect timed out", never_connected=True), True),
        (APIConnectionError("reset"), False),  # may have been processed
        (APITimeoutError("read timed out"), False),
        (RateLimitError(429), True),  # turned away
        (RateLimitError(429, retry_after=2.0), True),
        (ServerError(503, retry_after=2.0), True),  # turned away, told when to come back
        (ServerError(503), False),
        (ServerError(500), False),
        (ServerError(502), False),
        (ServerError(504), False),
        (APIStatusError(404), False),
        (APIError("Duplicate lead"), False),
        (ValueError("bug"), False),
    ],
)
def test_a_request_not_safe_to_repeat_is_retried_only_when_it_cannot_have_been_processed(
    error: BaseException, retried: bool
) -> None:
    assert is_retryable(error, idempotent=False) is retried
    with convoso_async.set_testing():
        wait = RetryPolicy(3, idempotent=False).next_wait(error, 1)
    assert (wait is not None) is retried


def test_an_idempotent_request_retries_a_connection_error_either_way() -> None:
    assert is_retryable(APIConnectionError("refused", never_connected=True))
    assert is_retryable(APIConnectionError("reset", never_connected=False))
    assert RetryPolicy(3).idempotent  # the campaign calls' policy


@pytest.mark.anyio
async def test_retry_after_seconds_is_honoured(api: respx.MockRouter) -> None:
    route = api.post("/campaigns/status")
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "0.3"}),
        httpx.Response(200, json={"success": True}),
    ]
    async with httpx.AsyncClient() as http:
        convoso = AsyncConvoso("t", base_url="https://api.test.invalid/v1", http_client=http)
        started = time.monotonic()
        await convoso.campaigns.activate("1")
        waited = time.monotonic() - started
    assert route.call_count == 2
    assert waited >= 0.28


@pytest.mark.anyio
@pytest.mark.usefixtures("instant_retries")
async def test_retries_are_logged_with_attempt_numbers(
    api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    api.post("/campaigns/status").side_effect = [
        httpx.Response(503),
        httpx.Response(502),
        httpx.Response(200, json={"success": True}),
    ]
    caplog.set_level("INFO", logger="convoso_async")
    async with httpx.AsyncClient() as http:
        convoso = AsyncConvoso("t", base_url="https://api.test.invalid/v1", http_client=http)
        await convoso.campaigns.activate("1")
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
    assert len(retries) == 2
    assert "ServerError (retry 1 of 3)" in retries[0]
    assert "(retry 2 of 3)" in retries[1]
