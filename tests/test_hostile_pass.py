"""A second hostile pass (issue 28): callbacks of the caller's that raise, field names PHP reads
as one, against the fake over loopback.

- A response hook of the caller's ``http_client`` that fails to connect somewhere else (an
  audit service, say) raises a connection error *after* Convoso answered: that is no proof the
  request never left, so a non-idempotent ``post`` is not sent again.
- Two field names PHP files under one name (``first name`` and ``first_name``; ``tags`` and
  ``tags[]``) would have the later silently replace the earlier on Convoso's side, and a name
  PHP reads no name in (``[x]``) is silently dropped: both are refused before anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx2
import pytest

from convoso_async import AdaptiveLimiter, APIConnectionError, AsyncConvoso, Limiter, RateLimiter
from convoso_async.testing import FakeConvoso

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("instant_retries")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_response_hook_that_cannot_connect_elsewhere_does_not_resend_an_insert(
    closed_port: int,
) -> None:
    inserted: list[dict[str, str]] = []

    def insert(fields: dict[str, str]) -> dict[str, object]:
        inserted.append(fields)
        return {"success": True, "data": {"lead_id": len(inserted)}}

    fake = FakeConvoso(campaigns=3)
    fake.add_endpoint("/leads/insert", insert)
    async with httpx2.AsyncClient() as audit:

        async def report(response: Any) -> None:  # the application's audit trail is down
            await audit.post(f"http://127.0.0.1:{closed_port}/audit", content=b"")

        async with (
            fake.serve() as url,
            httpx2.AsyncClient(event_hooks={"response": [report]}) as http,
            AsyncConvoso(fake.TOKEN, base_url=url, http_client=http) as convoso,
        ):
            with pytest.raises(APIConnectionError):
                await convoso.post("/leads/insert", {"first_name": "Ada"})
            assert len(inserted) == 1  # Convoso inserted it: sent once, never again
            with pytest.raises(APIConnectionError):
                await convoso.campaigns.set_status("1001", False)  # a set: safe to repeat
    statuses = [r for r in fake.requests if r.path == "/campaigns/status"]
    assert len(statuses) == 4  # 1 + max_retries, as for any connection failure
    assert fake.campaign_status("1001") == "N"


# -- field names PHP reads as one, or drops ----------------------------------------------------

ONE_FIELD_TO_PHP = [
    ({"first name": "Ada", "first_name": "Grace"}, "first_name"),
    ({"list.id": "5", "list_id": "6"}, "list_id"),
    ({" phone": "1", "phone": "2"}, "phone"),
    ({"phone\x00note": "1", "phone": "2"}, "phone"),
    ({"tags": "a", "tags[]": "b"}, "tags"),
    ({"tags[x]": "a", "tags": "b"}, "tags"),
]


@pytest.mark.parametrize(("fields", "read_as"), ONE_FIELD_TO_PHP)
async def test_two_fields_php_reads_as_one_are_refused_before_anything_is_sent(
    fields: dict[str, str], read_as: str
) -> None:
    fake = FakeConvoso()
    fake.add_endpoint("/leads/update")
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        with pytest.raises(ValueError, match="one field to Convoso") as refused:
            await convoso.post("/leads/update", fields)
    assert repr(read_as) in str(refused.value)
    assert all(repr(name) in str(refused.value) for name in fields)
    assert not fake.requests


@pytest.mark.parametrize("name", ["[auth_token]", "[x]", "\x00phone", " [x]"])
async def test_a_field_php_would_drop_is_refused(name: str) -> None:
    fake = FakeConvoso()
    fake.add_endpoint("/leads/update")
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        with pytest.raises(ValueError, match="would be dropped by Convoso"):
            await convoso.post("/leads/update", {name: "X"})
    assert not fake.requests


async def test_array_fields_php_merges_are_sent_as_given() -> None:
    fake = FakeConvoso()
    fake.add_endpoint("/leads/update")
    fields = {"tags[]": "a", "tags[x]": "b", "first_name": "Ada", "First_Name": "Ada"}
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        answer = await convoso.post("/leads/update", fields)
    assert answer["fields"] == fields


# -- paths whose decoded segments hold control characters ----------------------------------------


@pytest.mark.parametrize(
    "path", ["/..%00/admin", "/%2e%2e%00/admin", "/leads%0d%0a/search", "/%2e.%09/x"]
)
async def test_a_path_with_an_encoded_control_character_is_refused(path: str) -> None:
    # A server written in C (or PHP's path handling) may end the segment at the NUL and read
    # '..'; a CR/LF may split a header or a log line. No endpoint's path holds one.
    fake = FakeConvoso()
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        with pytest.raises(ValueError, match="control character") as refused:
            await convoso.post(path, {})
    assert repr(path) in str(refused.value)
    assert not fake.requests


# -- one limiter, clients on trio and on asyncio -----------------------------------------------


@pytest.mark.parametrize(
    "make", [lambda: Limiter(50), AdaptiveLimiter], ids=["Limiter", "Adaptive"]
)
def test_a_limiter_paces_on_asyncio_after_pacing_on_trio(make: Callable[[], RateLimiter]) -> None:
    # A Convoso (its loop is asyncio's) and an AsyncConvoso under trio.run share one limiter.
    # trio's clock starts at a random offset of hours: the times the limiter kept there made
    # the asyncio side sleep for hours.
    limiter = make()

    async def grants(count: int) -> None:
        with anyio.fail_after(10):
            for _ in range(count):
                await limiter.acquire()

    anyio.run(grants, 5, backend="trio")
    anyio.run(grants, 5, backend="asyncio")
    anyio.run(grants, 5, backend="trio")
