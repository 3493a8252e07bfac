"""A second hostile pass (issue 28): callbacks of the caller's that raise, field names PHP reads
as one, against the fake over loopback.

- A response hook of the caller's ``http_client`` that fails to connect somewhere else (an
  audit service, say) raises a connection error *after* Convoso answered: that is no proof the
  request never left, so a non-idempotent ``post`` is not sent again.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from convoso_async import APIConnectionError, AsyncConvoso
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
