"""The real client against the real fake server over loopback sockets."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

import convoso_async
from convoso_async import AsyncConvoso, CampaignNotFoundError, ConvosoError
from convoso_async._http.httpx_sender import HttpxSender
from convoso_async.testing import FakeConvoso, Fault, FaultKind

pytestmark = pytest.mark.anyio


async def test_search_single_and_bulk_over_loopback(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=120)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        campaigns = await convoso.campaigns.search()
        assert [c.id for c in campaigns] == list(fake.statuses())
        assert {c.id: c.status.value for c in campaigns} == fake.statuses()

        await convoso.campaigns.deactivate(campaigns[0].id)
        assert fake.campaign_status(campaigns[0].id) == "N"
        with pytest.raises(CampaignNotFoundError):
            await convoso.campaigns.activate("404")

        ids = [c.id for c in campaigns]
        result = await convoso.campaigns.set_status_many([*ids, "404", ids[3]], True)
        assert sorted(result.succeeded) == sorted(ids)
        assert list(result.failed) == ["404"]
        assert set(fake.statuses().values()) == {"Y"}
        # The default client is a stock httpx2 client, on either backend.
        sender = convoso._pool.sender()
        assert isinstance(sender, HttpxSender)
        assert type(sender.client._transport) is httpx2.AsyncHTTPTransport
    assert all(not r.token_in_query and r.token_ok for r in fake.requests)


@pytest.mark.timing
async def test_in_flight_at_the_server_reaches_but_never_exceeds_the_bound(
    anyio_backend: str,
) -> None:
    fake = FakeConvoso(campaigns=96, latency=0.05)
    async with (
        fake.serve() as url,
        AsyncConvoso(fake.TOKEN, base_url=url, max_concurrency=12) as convoso,
    ):
        result = await convoso.campaigns.set_status_many(list(fake.statuses()), False)
    assert result.ok
    peak = max(r.in_flight for r in fake.requests)
    assert peak == 12


@pytest.mark.timing
async def test_rate_limit_holds_at_the_server_in_every_one_second_window(
    anyio_backend: str,
) -> None:
    fake = FakeConvoso(campaigns=100)
    async with (
        fake.serve() as url,
        AsyncConvoso(fake.TOKEN, base_url=url, rate_limit=40, max_concurrency=16) as convoso,
    ):
        result = await convoso.campaigns.set_status_many(list(fake.statuses()), True)
    assert result.ok
    # Room for a request that reaches the server up to 0.1 s after its grant on a loaded machine
    # (the limiter's own slack is 20 ms); tests/test_ratelimit.py pins the exact bound.
    assert fake.max_in_window(0.9) <= 40
    times = [r.time for r in fake.requests]
    assert times[-1] - times[0] >= 2.4  # paced: 100 requests at 40/s need more than two seconds


async def test_server_429_pauses_every_task_and_all_campaigns_still_succeed(
    anyio_backend: str,
) -> None:
    fake = FakeConvoso(campaigns=60, retry_after=1.0)
    fake.add_fault(Fault("rate_limit", on_requests={10}, retry_after=1.0))
    async with (
        fake.serve() as url,
        AsyncConvoso(fake.TOKEN, base_url=url, max_concurrency=8) as convoso,
    ):
        result = await convoso.campaigns.set_status_many(list(fake.statuses()), False)
    assert result.ok
    assert result.retries == 1
    (limited,) = [r for r in fake.requests if r.status == 429]
    # Requests already on the wire may land just after; nothing new for the rest of the pause.
    quiet = [r for r in fake.requests if limited.time + 0.15 < r.time < limited.time + 0.95]
    assert quiet == []
    assert set(fake.statuses().values()) == {"N"}


@pytest.mark.parametrize(
    ("kind", "options", "error_name"),
    [
        ("status", {"status": 503}, "ServerError"),
        ("status", {"status": 502}, "ServerError"),
        ("rate_limit", {"retry_after": 0.0}, "RateLimitError"),
        ("drop", {}, "APIConnectionError"),
        ("slow", {"delay": 1.0}, "APITimeoutError"),
        ("bad_json", {}, "ResponseDecodeError"),
        ("bad_shape", {}, "ResponseDecodeError"),
    ],
)
async def test_each_fault_kind_over_loopback_is_retried_or_typed(
    anyio_backend: str, kind: FaultKind, options: dict[str, Any], error_name: str
) -> None:
    with convoso_async.set_testing():
        fake = FakeConvoso(campaigns=4)
        fault = fake.add_fault(Fault(kind, **options))
        # Only the slow fault waits out the timeout; the others answer at once, and a long
        # timeout keeps a loaded machine from turning their answers into timeouts.
        timeout = 0.3 if kind == "slow" else 10.0
        async with (
            fake.serve() as url,
            # Per-request typing under a total outage; the breaker's own behaviour
            # there (stop sending) is pinned in test_breaker.py.
            AsyncConvoso(
                fake.TOKEN, base_url=url, timeout=timeout, max_retries=1, circuit_breaker=False
            ) as convoso,
        ):
            with pytest.raises(ConvosoError) as caught:
                await convoso.campaigns.search()
            assert type(caught.value).__name__ == error_name
            result = await convoso.campaigns.set_status_many(list(fake.statuses()), False)
            # (a status answer without "success" is an UnexpectedResponseError, one of them)
            expected = getattr(convoso_async, error_name)
            assert all(isinstance(e, expected) for e in result.failed.values()), result.failed
            assert len(result.failed) == 4

            if error_name == "ResponseDecodeError":
                return  # a malformed answer is not retried (the next one would be too)
            # Transient: the same fault once only is absorbed by a retry.
            fake.clear_faults()
            fault.times = fault.hits + 1
            fake.add_fault(fault)
            await convoso.campaigns.activate("1001")
            assert fake.campaign_status("1001") == "Y"
