"""The retry policy: Retry-After parsing, backoff bounds, the testing switch."""

from __future__ import annotations

import datetime as dt
import time

import httpx
import pytest
import respx

import convoso_async
from convoso_async import APIError, AsyncConvoso, RateLimitError
from convoso_async._defaults import RETRY_AFTER_CAP
from convoso_async._errors import APIConnectionError, APIStatusError, APITimeoutError, ServerError
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


def test_retry_after_replaces_the_backoff_within_the_cap() -> None:
    policy = RetryPolicy(3, retry_after_cap=10.0)
    assert policy.delay(RateLimitError(429, retry_after=4.0), 1) == 4.0
    assert policy.delay(ServerError(503, retry_after=30.0), 1) == 10.0


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
