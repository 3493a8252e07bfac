"""``post(path, fields)``: any Convoso endpoint through the pipeline the campaign calls use.

Against the fake over loopback, with endpoints it gains through ``add_endpoint``: the token
in the body only, pacing, the breaker, the error tree, redaction, and the retry rule for a
request that is not safe to repeat: retried only when it cannot have been processed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import pytest

import convoso_async
from convoso_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AsyncConvoso,
    AuthenticationError,
    CircuitBreaker,
    CircuitOpenError,
    ConfigurationError,
    PermissionDeniedError,
    ServerError,
)
from convoso_async._http.pool import Transport
from convoso_async.testing import FakeConvoso, Fault

pytestmark = pytest.mark.anyio

INSERT = "/leads/insert"
SECRET = "tok-POST-SECRET-9f8e7d6c"

#: (transport, event loop): the client's own httpx2 pool on both loops, and the aiohttp opt-in
#: where its extra is installed (``nox -s matrix``).
SENDERS = [
    ("httpx2", "asyncio"),
    ("httpx2", "trio"),
    pytest.param(
        "aiohttp",
        "asyncio",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("aiohttp") is None, reason="the aiohttp extra is absent"
        ),
    ),
]


class Leads:
    """A lead-insert-like endpoint: every request that reaches it inserts one more lead."""

    def __init__(self) -> None:
        self.inserted: list[dict[str, str]] = []

    def insert(self, fields: dict[str, str]) -> dict[str, Any]:
        self.inserted.append(fields)
        return {"success": True, "data": {"lead_id": str(len(self.inserted))}}


@contextlib.asynccontextmanager
async def serving(fake: FakeConvoso, **options: Any) -> AsyncIterator[AsyncConvoso]:
    options.setdefault("auth_token", fake.TOKEN)
    async with fake.serve() as url, AsyncConvoso(base_url=url, **options) as convoso:
        yield convoso


def sent_to(fake: FakeConvoso, path: str) -> int:
    return sum(1 for r in fake.requests if r.path == path)


@pytest.fixture(autouse=True)
def instant_waits() -> Iterator[None]:
    with convoso_async.set_testing():
        yield


# -- the pipeline -----------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_post_returns_the_decoded_answer_with_the_token_in_the_body_only() -> None:
    fake = FakeConvoso()
    fake.add_endpoint("/leads/search")  # echoes the fields it got
    async with serving(fake) as convoso:
        answer = await convoso.post(
            "/leads/search", {"list_id": 5, "active": True, "score": 0.5, "name": "Zoë"}
        )
    assert answer == {
        "success": True,
        "path": "/leads/search",
        "fields": {"list_id": "5", "active": "true", "score": "0.5", "name": "Zoë"},
    }
    [request] = fake.requests
    assert request.token_ok
    assert not request.token_in_query
    assert request.form["auth_token"] == "***"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_success_false_becomes_the_error_tree_with_the_code_kept() -> None:
    fake = FakeConvoso()
    answers = iter(
        [
            {"success": False, "error": "Duplicate phone number", "code": 4021},
            {"success": False, "error": "Insufficient permissions for this auth token"},
            {"success": False, "error": "Missing token", "code": 401},
        ]
    )
    fake.add_endpoint(INSERT, lambda fields: next(answers))
    errors: list[APIError] = []
    async with serving(fake) as convoso:
        for _ in range(3):
            with pytest.raises(APIError) as caught:
                await convoso.post(INSERT, {"phone_number": "5551234567"})
            errors.append(caught.value)
    assert [(type(e), e.code) for e in errors] == [
        (APIError, 4021),
        (PermissionDeniedError, None),
        (AuthenticationError, 401),
    ]
    assert str(errors[0]) == "Duplicate phone number (Convoso code 4021)"
    assert sent_to(fake, INSERT) == 3  # an answer is final: never retried


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_post_is_paced_by_the_client_limiter() -> None:
    fake = FakeConvoso()
    fake.add_endpoint(INSERT)
    async with serving(fake, rate_limit=2) as convoso:
        for n in range(4):
            await convoso.post(INSERT, {"n": n})
    assert sent_to(fake, INSERT) == 4
    assert fake.max_in_window(1.0, path=INSERT) <= 2  # server-side arrival times


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_post_is_refused_by_an_open_breaker_with_nothing_sent() -> None:
    fake = FakeConvoso()
    fake.add_endpoint(INSERT)
    breaker = CircuitBreaker(failure_threshold=1, cooldown=60)
    fake.add_fault(Fault("status", status=500, path=INSERT, on_requests={2}))
    async with serving(fake, circuit_breaker=breaker) as convoso:
        await convoso.post(INSERT, {"n": "1"})
        with pytest.raises(ServerError):
            await convoso.post(INSERT, {"n": "2"})  # a 500 may have been processed: not retried
        with pytest.raises(CircuitOpenError):
            await convoso.post(INSERT, {"n": "3"})
    assert sent_to(fake, INSERT) == 2  # the third was never sent


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_429_on_post_pauses_the_whole_client() -> None:
    fake = FakeConvoso()
    fake.add_endpoint(INSERT)
    fake.add_fault(Fault("rate_limit", path=INSERT, retry_after=30, times=1))
    with convoso_async.set_testing(False):
        async with serving(fake, max_retries=0) as convoso:
            with pytest.raises(convoso_async.RateLimitError):
                await convoso.post(INSERT)
            assert convoso._pipeline.pause.remaining > 25  # a campaign call now waits too


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_neither_the_token_nor_a_field_value_reaches_a_log_line_or_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeConvoso(tokens=[SECRET])
    fake.add_endpoint(INSERT, lambda f: {"success": False, "error": f"bad token {SECRET}"})
    caplog.set_level(logging.DEBUG)
    async with serving(fake, auth_token=SECRET) as convoso:
        with pytest.raises(APIError) as caught:
            await convoso.post(INSERT, {"phone_number": "5559876543"})
    assert SECRET not in str(caught.value)
    assert "***" in str(caught.value)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"POST {INSERT}" in logged
    assert SECRET not in logged
    assert "5559876543" not in logged


# -- the retry rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(("transport", "anyio_backend"), SENDERS)
async def test_a_lead_insert_is_not_sent_twice_after_a_read_timeout(transport: str) -> None:
    fake = FakeConvoso()
    leads = Leads()
    fake.add_endpoint(INSERT, leads.insert)
    fake.add_fault(Fault("slow", delay=1.5, path=INSERT, times=1))
    async with serving(fake, transport=transport, timeout=0.5, max_retries=3) as convoso:
        with pytest.raises(APITimeoutError) as caught:
            await convoso.post(INSERT, {"list_id": "5", "phone_number": "5551234567"})
    assert caught.value.never_connected is False
    assert sent_to(fake, INSERT) == 1
    assert len(leads.inserted) == 1  # it did land: sending it again would insert twice


@pytest.mark.parametrize(("transport", "anyio_backend"), SENDERS)
async def test_idempotent_true_retries_after_a_read_timeout(transport: str) -> None:
    fake = FakeConvoso()
    leads = Leads()
    fake.add_endpoint(INSERT, leads.insert)
    fake.add_fault(Fault("slow", delay=1.5, path=INSERT, times=1))
    async with serving(fake, transport=transport, timeout=0.5, max_retries=3) as convoso:
        answer = await convoso.post(INSERT, {"phone_number": "5551234567"}, idempotent=True)
    assert answer == {"success": True, "data": {"lead_id": "2"}}
    assert sent_to(fake, INSERT) == 2


@contextlib.contextmanager
def on_retry(action: Callable[[], None]) -> Iterator[list[str]]:
    """Run ``action`` when the client logs its first retry (before it waits and sends again)."""
    seen: list[str] = []

    class Hook(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("retrying"):
                seen.append(record.getMessage())
                if len(seen) == 1:
                    action()

    logger = logging.getLogger("convoso_async")
    hook, level = Hook(), logger.level
    logger.addHandler(hook)
    logger.setLevel(logging.INFO)
    try:
        yield seen
    finally:
        logger.removeHandler(hook)
        logger.setLevel(level)


@pytest.mark.parametrize(("transport", "anyio_backend"), SENDERS)
async def test_a_lead_insert_is_retried_after_a_refused_connection(
    transport: str, closed_port: int
) -> None:
    fake = FakeConvoso()
    leads = Leads()
    fake.add_endpoint(INSERT, leads.insert)
    url = f"http://127.0.0.1:{closed_port}/v1"
    stack = contextlib.ExitStack()

    def start_serving() -> None:
        # Nothing listened for the first attempt; the server starts before the retry.
        stack.enter_context(fake.serve_in_thread(port=closed_port))

    with stack, on_retry(start_serving) as seen:
        async with AsyncConvoso(
            fake.TOKEN, base_url=url, transport=cast(Transport, transport), max_retries=3
        ) as convoso:
            answer = await convoso.post(INSERT, {"phone_number": "5551234567"})
    assert answer["data"] == {"lead_id": "1"}
    assert "after APIConnectionError (retry 1 of 3)" in seen[0]
    assert sent_to(fake, INSERT) == 1


@pytest.mark.parametrize(("transport", "anyio_backend"), SENDERS)
async def test_a_lead_insert_is_retried_after_a_429_and_a_503_that_says_when(
    transport: str,
) -> None:
    fake = FakeConvoso()
    leads = Leads()
    fake.add_endpoint(INSERT, leads.insert)
    fake.add_fault(Fault("rate_limit", path=INSERT, on_requests={1}))
    fake.add_fault(Fault("status", status=503, retry_after=1, path=INSERT, on_requests={2}))
    async with serving(fake, transport=transport, max_retries=3) as convoso:
        answer = await convoso.post(INSERT, {"phone_number": "5551234567"})
    assert answer["data"] == {"lead_id": "1"}
    assert [r.status for r in fake.requests] == [429, 503, 200]
    assert len(leads.inserted) == 1


@pytest.mark.parametrize(("transport", "anyio_backend"), SENDERS)
async def test_a_lead_insert_is_not_retried_after_a_bare_5xx_or_a_dropped_connection(
    transport: str,
) -> None:
    fake = FakeConvoso()
    fake.add_endpoint(INSERT, Leads().insert)
    fake.add_fault(Fault("status", status=503, path=INSERT, on_requests={1}))
    fake.add_fault(Fault("status", status=502, path=INSERT, on_requests={2}))
    fake.add_fault(Fault("drop", path=INSERT, on_requests={3}))
    async with serving(fake, transport=transport, max_retries=3) as convoso:
        with pytest.raises(ServerError):
            await convoso.post(INSERT)
        with pytest.raises(ServerError):
            await convoso.post(INSERT)
        with pytest.raises(APIConnectionError) as dropped:
            await convoso.post(INSERT)
        # The same failures on a call that says it is safe to repeat are retried away.
        fake.add_fault(Fault("drop", path=INSERT, on_requests={4}))
        fake.add_fault(Fault("status", status=502, path=INSERT, on_requests={5}))
        await convoso.post(INSERT, idempotent=True)
    assert dropped.value.never_connected is False
    assert [r.status for r in fake.requests] == [503, 502, 0, 0, 502, 200]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_campaign_calls_keep_their_retries() -> None:
    fake = FakeConvoso()
    fake.add_fault(Fault("slow", delay=1.5, path="/campaigns/status", times=1))
    fake.add_fault(Fault("status", status=502, path="/campaigns/status", times=1))
    async with serving(fake, timeout=0.5) as convoso:
        await convoso.campaigns.deactivate("1001")
    assert sent_to(fake, "/campaigns/status") == 3
    assert fake.campaign_status("1001") == "N"


# -- bad input --------------------------------------------------------------------------------

BAD_CALLS: list[tuple[type[Exception], str, Any, str]] = [
    (TypeError, b"/leads", None, "path must be a string"),  # type: ignore[list-item]
    (ValueError, "leads/search", None, "starting with one '/'"),
    (ValueError, "https://api.convoso.com/v1/leads/search", None, "starting with one '/'"),
    (ValueError, "//evil.example/leads", None, "starting with one '/'"),
    (ValueError, "/leads/search?list_id=5", None, "query"),
    (ValueError, "/leads/search#x", None, "query"),
    (ValueError, "/leads/ search", None, "space"),
    (ValueError, "/leads/\nsearch", None, "space"),
    (ValueError, "/", None, "names no endpoint"),
    (ValueError, "/v1/leads/search", None, "pass '/leads/search'"),
    (TypeError, "/leads/search", [("list_id", "5")], "mapping"),
    (TypeError, "/leads/search", "list_id=5", "mapping"),
    (TypeError, "/leads/search", {5: "x"}, "name must be a string"),
    (ValueError, "/leads/search", {"": "x"}, "empty"),
    (TypeError, "/leads/search", {"list_id": None}, "leave it out"),
    (TypeError, "/leads/search", {"list_id": ["5"]}, "str, int, float or bool"),
    (TypeError, "/leads/search", {"list_id": b"5"}, "str, int, float or bool"),
    (ValueError, "/leads/search", {"score": float("nan")}, "finite"),
    (ValueError, "/leads/search", {"name": "\ud800"}, "UTF-8"),
    (ValueError, "/leads/search", {"auth_token": "other"}, "auth token"),
    (ValueError, "/leads/search", {"auth.token": "other"}, "auth token"),
    (ValueError, "/leads/search", {" auth_token": "other"}, "auth token"),
    (ValueError, "/leads/search", {"auth_token[]": "other"}, "auth token"),
    (ValueError, "/leads/search", {"AUTH_TOKEN": "other"}, "auth token"),
]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(("error", "path", "fields", "words"), BAD_CALLS)
async def test_bad_input_is_refused_before_anything_is_sent(
    error: type[Exception], path: Any, fields: Any, words: str
) -> None:
    fake = FakeConvoso()
    async with serving(fake) as convoso:
        with pytest.raises(error, match=words.replace("?", r"\?")) as caught:
            await convoso.post(path, fields)
    assert not isinstance(caught.value, ConfigurationError)  # data, not an option
    assert fake.requests == []
    assert "other" not in str(caught.value)  # a field's value is never shown


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("value", ["yes", 1, None])
async def test_a_wrong_idempotent_is_a_configuration_error_naming_it(value: object) -> None:
    fake = FakeConvoso()
    async with serving(fake) as convoso:
        with pytest.raises(ConfigurationError, match="idempotent"):
            await convoso.post("/leads/search", idempotent=value)  # type: ignore[arg-type]
    assert fake.requests == []
