"""Results and models as JSON: ``to_dict()``, the CLI's ``--json``, and a FastAPI app.

The documented way to return them from a web handler is ``.to_dict()``: plain
JSON types, so FastAPI (or any framework) encodes them with no pydantic model
and no custom encoder. The app here is driven over ``httpx.ASGITransport``
and talks to the fake Convoso in-process.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from convoso_async import AsyncConvoso, BatchProgress
from convoso_async.cli._output import result_json
from convoso_async.testing import FakeConvoso

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("instant_retries")]


def strict_json(document: Any) -> Any:
    """``document`` through json with no fallback encoder: fails on anything not plain JSON."""
    return json.loads(json.dumps(document, allow_nan=False))


def make_app(convoso: AsyncConvoso, seen: list[BatchProgress]) -> FastAPI:
    app = FastAPI()

    @app.get("/campaigns")
    async def campaigns() -> list[dict[str, Any]]:
        return [c.to_dict() for c in await convoso.campaigns.search()]

    @app.post("/deactivate")
    async def deactivate(ids: list[str]) -> dict[str, Any]:
        result = await convoso.campaigns.set_status_many(ids, False, on_progress=seen.append)
        return result.to_dict()

    @app.post("/activate-each")
    async def activate_each(ids: list[str]) -> list[dict[str, Any]]:
        return [o.to_dict() async for o in convoso.campaigns.iter_set_status(ids, True)]

    return app


async def test_fastapi_returns_models_results_and_outcomes_through_to_dict(
    anyio_backend: str,
) -> None:
    fake = FakeConvoso(campaign_ids=["111", "222", "333", "1004", "1005"])
    seen: list[BatchProgress] = []
    http = httpx.AsyncClient(transport=fake.transport(family="httpx"))
    async with AsyncConvoso(fake.TOKEN, base_url="https://fake/v1", http_client=http) as convoso:
        app = make_app(convoso, seen)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://app.test"
        ) as client:
            listed = await client.get("/campaigns")
            searched = await convoso.campaigns.search()  # the same state, as models
            changed = await client.post("/deactivate", json=["111", "404", "222"])
            streamed = await client.post("/activate-each", json=["333", "404"])
    await http.aclose()

    assert listed.status_code == 200
    assert listed.json() == strict_json([c.to_dict() for c in searched])
    assert listed.json()[0]["last_call_date"]["date"] == "2026-03-03"

    assert changed.status_code == 200
    body = changed.json()
    assert body["ok"] is False
    assert sorted(body["succeeded"]) == ["111", "222"]
    assert body["failed"] == {
        "404": {
            "error": "CampaignNotFoundError",
            "message": "campaign '404' does not exist (Convoso code 6026)",
        }
    }
    assert body["total"] == 3
    assert body["summary"].startswith("3 campaigns: 2 succeeded, 1 failed")
    assert seen[-1].to_dict() == {
        "done": 3,
        "total": 3,
        "succeeded": 2,
        "failed": 1,
        "skipped": 0,
        "not_sent": 0,
    }

    outcomes = sorted(streamed.json(), key=lambda o: o["campaign_id"])
    assert outcomes == [
        {
            "campaign_id": "333",
            "active": True,
            "ok": True,
            "sent": True,
            "attempts": 1,
            "error": None,
        },
        {
            "campaign_id": "404",
            "active": True,
            "ok": False,
            "sent": True,
            "attempts": 1,
            "error": {
                "error": "CampaignNotFoundError",
                "message": "campaign '404' does not exist (Convoso code 6026)",
            },
        },
    ]


async def test_the_cli_json_is_the_results_to_dict(anyio_backend: str) -> None:
    fake = FakeConvoso(campaign_ids=["111", "222"])
    http = httpx.AsyncClient(transport=fake.transport(family="httpx"))
    async with AsyncConvoso(fake.TOKEN, base_url="https://fake/v1", http_client=http) as convoso:
        dry = await convoso.campaigns.set_status_many(["111", "222", "9"], False, dry_run=True)
        skipping = await convoso.campaigns.set_status_many(
            ["111", "222", "9"], True, skip_unchanged=True
        )
    await http.aclose()

    for result in (dry, skipping):
        assert result_json(result) == result.to_dict() == strict_json(result.to_dict())
        # The pre-flight search's unknown id shows as the public error, never an internal one.
        assert result.to_dict()["failed"]["9"]["error"] == "CampaignNotFoundError"
    assert dry.to_dict()["planned"] == [
        {"id": "111", "active": False, "currently_active": True},
        {"id": "222", "active": False, "currently_active": True},
    ]
    assert dry.to_dict()["dry_run"] is True
    assert skipping.to_dict()["skipped"] == ["111", "222"]
