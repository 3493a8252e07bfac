"""A planted token appears nowhere, over real sockets, through every failure the client knows.

Everything is turned up: DEBUG for this library, its audit trail, httpx2, httpcore2, httpx,
httpcore, aiohttp and the root logger (which also catches the fake server's and the fault
proxy's threads). Then a search, single changes and bulk changes run against the fake on
loopback, through retries, 429s, 5xx, dropped and reset connections, timeouts, bad answers,
unknown campaigns and a rejected token, on asyncio and trio, with the default client (stock
httpx2) and the aiohttp opt-in. Every log record, every exception (its str, repr, args,
attributes, traceback, chained causes and contexts, and a pickled copy), and every model,
result, client and fake repr is searched for the token.
"""

from __future__ import annotations

import logging
import pickle
import traceback
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
import httpx
import pytest
from faultproxy import FaultProxy, Toxic

from convoso_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncConvoso,
    AuthenticationError,
    CampaignNotFoundError,
    ConvosoError,
    ResponseDecodeError,
    ServerError,
)
from convoso_async.testing import FakeConvoso, Fault

PLANTED = "PLANTED-hyg-9f3e7a1c55d2"
#: A second secret: the token of a client the fake rejects.
WRONG = "PLANTED-wrong-04b8e6d2aa"
SECRETS = (PLANTED, WRONG)
LOGGERS = (
    "convoso_async",
    "convoso_async.audit",
    "httpx2",
    "httpcore2",
    "httpx",
    "httpcore",
    "aiohttp",
    "",
)

TIMEOUT = 0.3
CAMPAIGNS = 30
UNKNOWN = "999999"
#: Each faulty campaign and what a single change of it must end in.
FAULTY: dict[str, type[ConvosoError] | None] = {
    "1003": ServerError,  # 503 on every attempt
    "1004": None,  # one 429 with Retry-After, then success
    "1005": APIConnectionError,  # dropped on every attempt
    "1006": None,  # dropped once, then success
    "1007": APITimeoutError,  # slower than the timeout on every attempt
    "1008": ResponseDecodeError,  # HTML instead of JSON
    "1009": ResponseDecodeError,  # JSON of the wrong shape
    UNKNOWN: CampaignNotFoundError,
}

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("instant_retries")]


def faulty_fake() -> FakeConvoso:
    fake = FakeConvoso(campaigns=CAMPAIGNS, tokens=(PLANTED,), seed=7)
    fake.add_fault(Fault("status", path="/campaigns/search", times=1))
    fake.add_fault(Fault("status", status=503, campaign_id="1003"))
    fake.add_fault(Fault("rate_limit", campaign_id="1004", times=1))
    fake.add_fault(Fault("drop", campaign_id="1005"))
    fake.add_fault(Fault("drop", campaign_id="1006", times=1))
    fake.add_fault(Fault("slow", campaign_id="1007", delay=1.0))
    fake.add_fault(Fault("bad_json", campaign_id="1008"))
    fake.add_fault(Fault("bad_shape", campaign_id="1009"))
    return fake


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:  # caplog restores every level afterwards
        caplog.set_level(logging.DEBUG, logger=name or None)
    return caplog


class Evidence:
    """Everything a user (or their log aggregator) could ever see, as text."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.errors = 0

    def add(self, *items: object) -> None:
        for item in items:
            if isinstance(item, BaseException):
                self.add_error(item)
            else:
                self.texts += [str(item), repr(item)]

    def add_error(self, error: BaseException) -> None:
        seen: set[int] = set()
        todo: list[BaseException | None] = [error]
        while todo:
            current = todo.pop()
            if current is None or id(current) in seen:
                continue
            seen.add(id(current))
            self.errors += 1
            self.texts += [str(current), repr(current), repr(current.args), repr(vars(current))]
            self.texts += [repr(arg) for arg in current.args]
            self.texts += traceback.format_exception(current)
            if isinstance(current, ConvosoError):
                copy = pickle.loads(pickle.dumps(current))
                self.texts += [str(copy), repr(copy), repr(vars(copy))]
            todo += [current.__cause__, current.__context__]

    def add_records(self, records: list[logging.LogRecord]) -> None:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        for record in records:
            self.texts += [record.getMessage(), repr(record.args), repr(vars(record))]
            self.texts.append(formatter.format(record))  # includes exc_info and stack_info
            if record.exc_info and record.exc_info[1] is not None:
                self.add_error(record.exc_info[1])

    def leaks(self) -> list[str]:
        return [text for text in self.texts if any(secret in text for secret in SECRETS)]


def fake_port(url: str) -> int:
    return int(url.split("//", 1)[1].split("/", 1)[0].rpartition(":")[2])


async def single_changes(client: AsyncConvoso, evidence: Evidence) -> None:
    """One change per faulty campaign; each ends as `FAULTY` says."""
    for campaign_id, expected in FAULTY.items():
        with anyio.fail_after(10):
            if expected is None:
                await client.campaigns.deactivate(campaign_id)
                continue
            with pytest.raises(expected) as caught:
                await client.campaigns.deactivate(campaign_id)
        evidence.add(caught.value)


async def bulk_changes(client: AsyncConvoso, evidence: Evidence) -> None:
    ids = [*(str(1001 + k) for k in range(CAMPAIGNS)), UNKNOWN]
    with anyio.fail_after(30):
        result = await client.campaigns.set_status_many(ids, True)
        skipping = await client.campaigns.apply_statuses(
            {"1001": True, "1002": False, UNKNOWN: True}, skip_unchanged=True
        )
        planned = await client.campaigns.set_status_many(ids[:5], False, dry_run=True)
        outcomes = [o async for o in client.campaigns.iter_set_status(["1003", "1010"], False)]
    failing = {cid for cid, expected in FAULTY.items() if expected is not None}
    assert set(result.failed) == failing, (result.summary(), dict(result.not_sent), result.unknown)
    evidence.add(result, result.summary(), skipping, skipping.summary(), planned, planned.summary())
    evidence.add(*result.failed.values(), *skipping.failed.values(), *outcomes)
    evidence.add(*(o.error for o in outcomes if o.error is not None))
    with pytest.raises(ConvosoError) as batch:
        result.raise_for_failures()
    evidence.add(batch.value)


@pytest.mark.parametrize("transport", ["httpx2", "aiohttp"])
async def test_token_appears_in_no_log_error_or_repr_over_real_sockets(
    anyio_backend: str, debug_logs: pytest.LogCaptureFixture, transport: Any
) -> None:
    if transport == "aiohttp":
        pytest.importorskip("aiohttp")
    evidence = Evidence()
    fake = faulty_fake()
    stranger = FakeConvoso(campaigns=3, seed=7)  # knows neither secret
    async with fake.serve() as url, stranger.serve() as stranger_url:
        async with AsyncConvoso(
            PLANTED,
            base_url=url,
            timeout=TIMEOUT,
            max_retries=1,
            max_concurrency=8,
            transport=transport,
        ) as client:
            evidence.add(client, client.with_options(timeout=2.0), client.campaigns)
            with anyio.fail_after(10):
                campaigns = await client.campaigns.search()  # a 503 first, retried
            assert len(campaigns) == CAMPAIGNS
            evidence.add(*campaigns)
            await single_changes(client, evidence)
            await bulk_changes(client, evidence)

        # The same, through connections reset at random on their way back.
        # Seed 6 resets connection 0, which the bulk change surely opens (seed 3 spared 0-3).
        with FaultProxy(upstream=("127.0.0.1", fake_port(url)), seed=6) as proxy:
            proxy.add(Toxic.reset_peer(probability=0.3))
            proxied = proxy.url_for("/v1")
            async with AsyncConvoso(
                PLANTED,
                base_url=proxied,
                timeout=TIMEOUT,
                max_retries=0,
                max_concurrency=8,
                transport=transport,
            ) as client:
                with anyio.fail_after(30):
                    result = await client.campaigns.set_status_many(
                        [str(1001 + k) for k in range(CAMPAIGNS)], False
                    )
                evidence.add(client, result, *result.failed.values())
                assert any(isinstance(e, APIConnectionError) for e in result.failed.values())
            assert proxy.stats.hits["reset_peer_downstream"] > 0
            evidence.add(proxy.stats)

        async with AsyncConvoso(
            WRONG, base_url=stranger_url, max_retries=1, transport=transport
        ) as rejected:
            evidence.add(rejected)
            for call in (
                rejected.campaigns.search,
                lambda: rejected.campaigns.activate("1001"),
            ):
                with anyio.fail_after(10), pytest.raises(AuthenticationError) as caught:
                    await call()
                evidence.add(caught.value)
            result = await rejected.campaigns.set_status_many(["1001", "1002"], True)
            assert all(isinstance(e, AuthenticationError) for e in result.failed.values())
            evidence.add(result, *result.failed.values())

    evidence.add(fake, stranger, *fake.requests, *stranger.requests)
    evidence.add_records(debug_logs.records)

    names = {record.name for record in debug_logs.records}
    # httpx/httpcore/aiohttp log only on some transports; this library's loggers always do.
    assert {"convoso_async", "convoso_async.audit"} <= names, names
    assert len(debug_logs.records) > 100, "the debug logging did not really run"
    assert evidence.errors > 20, "too few exceptions were examined"
    assert evidence.leaks() == []
    # The token travelled in the body only: never in a URL, and always whole.
    assert fake.requests, "the fake saw nothing"
    for record in fake.requests:
        assert not record.token_in_query
        assert record.token_ok
        assert record.form["auth_token"] == "***"
    for record in stranger.requests:
        assert not record.token_in_query
        assert not record.token_ok


# -- a server that echoes the token back ----------------------------------------------------


def echo(body: str) -> bytes:
    return body.replace("TOKEN", PLANTED).encode()


ECHO_HANDLED = {
    "in error": '{"success": false, "error": "bad token TOKEN"}',
    "in text": '{"success": false, "text": "TOKEN rejected"}',
    "in message": '{"success": false, "message": "auth_token=TOKEN"}',
}
ECHO_LEAKING = {
    "in a non-numeric code": '{"success": false, "error": "no", "code": "TOKEN"}',
    "in success": '{"success": "TOKEN"}',
}
ECHO_SEARCH_LEAKING = {
    "in a campaign status": '{"data": [{"id": "1", "name": "a", "status": "TOKEN"}]}',
    "in a last call date": (
        '{"data": [{"id": "1", "name": "a", "status": "Y", "last_call_date": '
        '{"date": "TOKEN", "timezone_type": 3, "timezone": "UTC"}}]}'
    ),
}


async def echoed_error(body: bytes, operation: str) -> ConvosoError:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        client = AsyncConvoso(
            PLANTED, base_url="https://api.echo.invalid/v1", http_client=http, max_retries=0
        )
        call: Callable[[], Awaitable[object]] = client.campaigns.search
        if operation == "status":
            call = partial(client.campaigns.activate, "1001")
        with pytest.raises(ConvosoError) as caught:
            await call()
    return caught.value


def echo_cases() -> list[Any]:
    cases = [pytest.param(body, "status", id=name) for name, body in ECHO_HANDLED.items()]
    cases += [pytest.param(body, "status", id=name) for name, body in ECHO_LEAKING.items()]
    cases += [pytest.param(body, "search", id=name) for name, body in ECHO_SEARCH_LEAKING.items()]
    return cases


@pytest.mark.parametrize(("body", "operation"), echo_cases())
async def test_a_token_echoed_by_the_server_never_reaches_an_exception(
    anyio_backend: str, body: str, operation: str
) -> None:
    error = await echoed_error(echo(body), operation)
    evidence = Evidence()
    evidence.add(error)
    assert evidence.leaks() == []
