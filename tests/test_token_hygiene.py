"""A planted token must appear in no log record, repr, exception or URL."""

from __future__ import annotations

import logging
import pickle

import httpx
import pytest
import respx

from convoso_async import AsyncConvoso, ConvosoError

PLANTED = "PLANTED-tok-8c1f0e9a77"
BASE = "https://api.test.invalid/v1"


def _answers(request: httpx.Request) -> httpx.Response:
    campaign = dict(httpx.QueryParams(request.content.decode())).get("campaign_id", "")
    if request.url.path.endswith("/search"):
        return httpx.Response(200, json={"data": [{"id": "1", "name": "A", "status": "Y"}]})
    if campaign == "echo":  # a server that echoes the token back in its error text
        return httpx.Response(200, json={"success": False, "error": f"bad token {PLANTED}"})
    if campaign == "down":
        raise httpx.ConnectError(f"cannot connect ({PLANTED})")
    if campaign == "busy":
        return httpx.Response(503)
    if campaign == "gone":
        return httpx.Response(200, json={"success": False, "error": "x", "code": 6026})
    return httpx.Response(200, json={"success": True})


@pytest.mark.anyio
async def test_token_never_appears_in_logs_reprs_errors_or_urls(
    api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    route = api.post(url__regex=r".*").mock(side_effect=_answers)
    for name in ("convoso_async", "convoso_async.audit", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    seen: list[object] = []
    async with httpx.AsyncClient() as http:
        client = AsyncConvoso(PLANTED, base_url=BASE, http_client=http, max_retries=1)
        seen += [client, client.with_options(timeout=3), client.campaigns]
        seen += await client.campaigns.search()
        result = await client.campaigns.set_status_many(
            ["ok1", "echo", "down", "busy", "gone"], True, skip_unchanged=False
        )
        seen += [result, result.summary()]
        for error in result.failed.values():
            seen += [error, *error.args]
        try:
            result.raise_for_failures()
        except ConvosoError as batch:
            seen += [batch, *batch.args]
        async for outcome in client.campaigns.iter_set_status(["ok2", "echo"], False):
            seen.append(outcome)
        for campaign_id in ("echo", "down", "busy"):
            with pytest.raises(ConvosoError) as caught:
                await client.campaigns.activate(campaign_id)
            seen += [caught.value, *caught.value.args, caught.value.__cause__]
            seen.append(pickle.loads(pickle.dumps(caught.value)))

    assert len(result.failed) == 4
    texts = [str(item) for item in seen] + [repr(item) for item in seen]
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    assert len(caplog.records) > 10  # the debug logging really ran
    leaks = [text for text in texts if PLANTED in text]
    assert leaks == []
    for call in route.calls:
        assert PLANTED not in str(call.request.url)
        assert f"auth_token={PLANTED}".encode() in call.request.content
