"""The endpoint description a resource declares, and the client's one port that sends it.

Through ``AsyncConvoso._call`` on a respx-mocked API: the idempotence the description declares
decides the retries, its codes choose the error, its subject names what a call is about on the
error, its decoding shapes the answer, and the reply carries the attempts back (on a failure
too) instead of a counter handed down the layers. Also: the bulk engine imports no HTTP module.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, cast

import attrs
import httpx
import pytest
import respx

import convoso_async
from convoso_async import APIError, AsyncConvoso, CampaignNotFoundError, ServerError
from convoso_async._http.endpoint import Endpoint, Reply, as_is

pytestmark = pytest.mark.anyio

PATH = "/things/update"


def _codes_found(payload: dict[str, Any]) -> list[str]:
    return [str(item) for item in payload["data"]]


@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize(("idempotent", "sent"), [(True, 4), (False, 1)])
async def test_the_descriptions_idempotence_decides_whether_a_5xx_is_retried(
    api: respx.MockRouter, convoso: AsyncConvoso, idempotent: bool, sent: int
) -> None:
    route = api.post(PATH).respond(500)
    reply = await convoso._call(Endpoint(PATH, idempotent=idempotent, decode=as_is), {})

    assert isinstance(reply.error, ServerError)
    assert reply.attempts == route.call_count == sent


@pytest.mark.usefixtures("instant_retries")
async def test_a_reply_carries_its_attempts_and_its_decoded_answer(
    api: respx.MockRouter, convoso: AsyncConvoso
) -> None:
    api.post(PATH).mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json={"data": [1, 2]})]
    )
    endpoint = Endpoint(PATH, idempotent=True, decode=_codes_found)
    reply = await convoso._call(endpoint, {})

    assert reply == Reply(["1", "2"], attempts=2)
    assert reply.unwrap() == ["1", "2"]


async def test_an_endpoints_codes_choose_its_error_and_its_subject_names_the_call(
    api: respx.MockRouter, convoso: AsyncConvoso
) -> None:
    api.post(PATH).respond(json={"success": False, "code": 7001, "text": "no such thing"})
    plain = Endpoint(PATH, idempotent=True, decode=as_is)
    declared = Endpoint(
        PATH,
        idempotent=True,
        decode=as_is,
        codes={7001: CampaignNotFoundError},
        subject="campaign_id",
    )

    error = (await convoso._call(plain, {"campaign_id": "55"})).error
    assert type(error) is APIError
    assert error.campaign_id is None
    reply = await convoso._call(declared, {"campaign_id": "55"})
    assert isinstance(reply.error, CampaignNotFoundError)
    assert (reply.error.code, reply.error.campaign_id, reply.attempts) == (7001, "55", 1)
    with pytest.raises(CampaignNotFoundError, match="'55' does not exist"):
        reply.unwrap()


async def test_an_endpoints_code_outranks_the_wording_of_its_message(
    api: respx.MockRouter, convoso: AsyncConvoso
) -> None:
    # The wording alone would say "authentication"; on this endpoint code 7002 means not found.
    api.post(PATH).respond(json={"success": False, "code": 7002, "text": "authentication of x"})
    declared = Endpoint(PATH, idempotent=True, decode=as_is, codes={7002: CampaignNotFoundError})

    assert isinstance((await convoso._call(declared, {})).error, CampaignNotFoundError)


async def test_an_answer_the_decoding_refuses_is_the_replys_error(
    api: respx.MockRouter, convoso: AsyncConvoso
) -> None:
    api.post(PATH).respond(json={"success": True})
    reply = await convoso._call(Endpoint(PATH, idempotent=True, decode=_codes_found), {})

    assert isinstance(reply.error, KeyError)
    assert reply.attempts == 1


def test_an_endpoint_description_is_frozen() -> None:
    endpoint = Endpoint(PATH, idempotent=False, decode=as_is, codes={1: APIError})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(endpoint, "idempotent", True)  # noqa: B010 (mypy would refuse the plain form)
    with pytest.raises(TypeError):
        cast(dict[int, type[APIError]], endpoint.codes)[2] = APIError


def test_the_bulk_engine_imports_no_http_module() -> None:
    bulk = Path(convoso_async.__file__).parent / "_bulk"
    for module in bulk.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert "_http" not in (node.module or ""), module.name
            elif isinstance(node, ast.Import):
                assert all("_http" not in alias.name for alias in node.names), module.name
