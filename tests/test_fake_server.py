"""The fake Convoso server: its API answers, state, rate limit, faults, records and front ends.

Talks to the fake with plain httpx2 through both front ends (the in-process
transport and the real loopback server, served on asyncio and on trio), on
asyncio and trio; with old httpx through the transport for its family; and
with raw sockets where HTTP/1.1's connection handling is the point.
"""

from __future__ import annotations

import contextlib
import functools
import json
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from http.client import HTTPConnection
from typing import Any, Literal, NamedTuple
from urllib.parse import urlencode, urlsplit

import anyio
import attrs
import httpx
import httpx2
import pytest
from reference_answers import REFERENCE_SEARCH_ANSWER

from convoso_async.testing import FakeConvoso, Fault, RecordedRequest
from convoso_async.testing.__main__ import build_arg_parser, main

SEARCH = "/campaigns/search"
STATUS = "/campaigns/status"
TOKEN = FakeConvoso.TOKEN
ServerBackend = Literal["asyncio", "trio"]


@pytest.fixture(params=["transport", "server", "server-on-trio"])
def front(request: pytest.FixtureRequest) -> str:
    """Which front end of the fake a test talks to (the server runs asyncio unless on trio)."""
    return str(request.param)


@contextlib.asynccontextmanager
async def connect(fake: FakeConvoso, front: str) -> AsyncIterator[httpx2.AsyncClient]:
    """An httpx2 client talking to ``fake`` in-process or over loopback."""
    if front == "transport":
        async with httpx2.AsyncClient(
            transport=fake.transport(), base_url="https://fake.test/v1"
        ) as client:
            yield client
    else:
        backend: ServerBackend = "trio" if front == "server-on-trio" else "asyncio"
        async with (
            fake.serve(backend=backend) as url,
            httpx2.AsyncClient(base_url=url, timeout=10) as client,
        ):
            yield client


def status_form(campaign_id: str, status: str, token: str = TOKEN) -> dict[str, str]:
    return {"auth_token": token, "campaign_id": campaign_id, "status": status}


def shape(value: Any) -> Any:
    """The JSON value with every leaf replaced by its type name (lists by their first item)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


# -- the API as documented ------------------------------------------------------------


@pytest.mark.anyio
async def test_search_has_the_reference_shape(anyio_backend: str, front: str) -> None:
    fake = FakeConvoso(
        campaigns=[
            {"id": "111", "name": "Sales", "status": "Y", "last_call_date": None},
            {
                "id": "222",
                "name": "Care",
                "status": "N",
                "last_call_date": {
                    "date": "2026-03-02",
                    "timezone_type": 3,
                    "timezone": "America/Denver",
                },
            },
        ]
    )
    async with connect(fake, front) as http:
        response = await http.post(SEARCH, data={"auth_token": TOKEN})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    assert shape({"data": payload["data"][1:]}) == shape(json.loads(REFERENCE_SEARCH_ANSWER))
    assert payload["data"][0]["last_call_date"] is None
    assert [c["id"] for c in payload["data"]] == ["111", "222"]


@pytest.mark.anyio
async def test_generated_campaigns_vary_like_real_data(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=100)
    statuses = fake.statuses()
    assert list(statuses)[:3] == ["1001", "1002", "1003"]
    assert len(statuses) == 100
    assert set(statuses.values()) == {"Y", "N"}

    async with connect(fake, "transport") as http:
        body = (await http.post(SEARCH, data={"auth_token": TOKEN})).json()["data"]
    dates = [c["last_call_date"] for c in body]
    assert any(d is None for d in dates)
    full = [d["date"] for d in dates if d is not None and " " in d["date"]]
    assert full, "some dates should carry PHP's time part"
    assert all(len(text) == len("2026-03-03 08:00:00.000000") for text in full)
    assert len({c["name"] for c in body}) == 100


@pytest.mark.anyio
@pytest.mark.parametrize(("sent", "expected"), [("false", "N"), ("true", "Y")])
async def test_status_changes_state_and_next_search(
    anyio_backend: str, front: str, sent: str, expected: str
) -> None:
    fake = FakeConvoso(
        campaigns=[{"id": "7", "name": "x", "status": "N" if sent == "true" else "Y"}]
    )
    async with connect(fake, front) as http:
        await http.post(SEARCH, data={"auth_token": TOKEN})  # fills the search cache
        response = await http.post(STATUS, data=status_form("7", sent))
        search = await http.post(SEARCH, data={"auth_token": TOKEN})

    assert response.json() == {"success": True}
    assert fake.campaign_status("7") == expected
    assert search.json()["data"][0]["status"] == expected


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("sent", "expected"), [("True", "Y"), ("TRUE", "Y"), ("1", "Y"), ("False", "N"), ("0", "N")]
)
async def test_status_accepts_what_requests_sends_for_a_bool(
    anyio_backend: str, sent: str, expected: str
) -> None:
    fake = FakeConvoso(
        campaigns=[{"id": "7", "name": "x", "status": "N" if expected == "Y" else "Y"}]
    )
    async with connect(fake, "transport") as http:
        response = await http.post(STATUS, data=status_form("7", sent))

    assert response.json() == {"success": True}
    assert fake.campaign_status("7") == expected


@pytest.mark.anyio
@pytest.mark.parametrize(
    "form", [status_form("999", "true"), {"auth_token": TOKEN, "status": "true"}]
)
async def test_unknown_or_missing_campaign_is_6026(
    anyio_backend: str, form: dict[str, str]
) -> None:
    fake = FakeConvoso(campaigns=2)
    before = fake.statuses()
    async with connect(fake, "transport") as http:
        response = await http.post(STATUS, data=form)

    assert response.status_code == 200
    assert response.json() == {"success": False, "error": "Campaign not found", "code": 6026}
    assert fake.statuses() == before


@pytest.mark.anyio
@pytest.mark.parametrize("status", ["yes", "", "2", None])
async def test_status_that_is_not_a_bool_is_6080(anyio_backend: str, status: str | None) -> None:
    fake = FakeConvoso(campaigns=2)
    before = fake.statuses()
    form = {"auth_token": TOKEN, "campaign_id": "1001"}
    if status is not None:
        form["status"] = status
    async with connect(fake, "transport") as http:
        response = await http.post(STATUS, data=form)

    assert response.json() == {
        "success": False,
        "error": "Status must be true or false",
        "code": 6080,
    }
    assert fake.statuses() == before


@pytest.mark.anyio
@pytest.mark.parametrize("path", [SEARCH, STATUS])
@pytest.mark.parametrize("token", ["wrong", None])
async def test_bad_or_missing_token_is_refused(
    anyio_backend: str, path: str, token: str | None
) -> None:
    fake = FakeConvoso(campaigns=2)
    before = fake.statuses()
    form = {"campaign_id": "1001", "status": "false"}
    if token is not None:
        form["auth_token"] = token
    async with connect(fake, "transport") as http:
        response = await http.post(path, data=form)

    assert response.status_code == 200
    assert response.json() == {"success": False, "error": "Invalid authentication token"}
    assert fake.statuses() == before
    assert fake.requests[0].token_ok is False


@pytest.mark.anyio
async def test_readonly_token_may_search_but_not_change_status(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=2, readonly_tokens=("viewer",))
    async with connect(fake, "transport") as http:
        search = await http.post(SEARCH, data={"auth_token": "viewer"})
        change = await http.post(STATUS, data=status_form("1001", "false", token="viewer"))

    assert len(search.json()["data"]) == 2
    assert change.json() == {"success": False, "error": "Insufficient permissions"}
    assert fake.campaign_status("1001") == "Y"
    assert all(r.token_ok for r in fake.requests)


@pytest.mark.anyio
async def test_unknown_path_is_404_and_other_methods_405(anyio_backend: str, front: str) -> None:
    fake = FakeConvoso()
    async with connect(fake, front) as http:
        missing = await http.post("/campaigns/delete", data={"auth_token": TOKEN})
        get = await http.get(SEARCH)

    assert missing.status_code == 404
    assert missing.json() == {"success": False, "error": "Not found"}
    assert get.status_code == 405
    assert get.headers["allow"] == "POST"


@pytest.mark.anyio
async def test_an_added_endpoint_answers_its_handler_and_is_logged(
    anyio_backend: str, front: str
) -> None:
    fake = FakeConvoso()
    inserted: list[dict[str, str]] = []

    def insert(fields: dict[str, str]) -> dict[str, object]:
        inserted.append(fields)
        # The handler runs under the fake's lock and may read its state.
        return {"success": True, "data": {"lead_id": len(inserted), "seen": len(fake.requests)}}

    fake.add_endpoint("/leads/insert", insert)
    fake.add_endpoint("/v1/leads/search")  # the built-in echo; /v1 is the API's prefix
    async with connect(fake, front) as http:
        first = await http.post("/leads/insert", data={"auth_token": TOKEN, "phone": "5551234"})
        echo = await http.post("/leads/search", data={"auth_token": TOKEN, "list_id": "5"})
        refused = await http.post("/leads/insert", data={"auth_token": "wrong", "phone": "1"})

    assert first.json() == {"success": True, "data": {"lead_id": 1, "seen": 0}}
    assert inserted == [{"phone": "5551234"}]  # the token never reaches a handler
    assert echo.json() == {"success": True, "path": "/leads/search", "fields": {"list_id": "5"}}
    assert refused.json() == {"success": False, "error": "Invalid authentication token"}
    assert [(r.path, r.status, r.form.get("auth_token")) for r in fake.requests] == [
        ("/leads/insert", 200, "***"),
        ("/leads/search", 200, "***"),
        ("/leads/insert", 200, "***"),
    ]


@pytest.mark.anyio
async def test_an_added_endpoint_takes_faults_and_a_failing_handler_is_a_500(
    anyio_backend: str,
) -> None:
    fake = FakeConvoso()
    fake.add_endpoint("/leads/insert", lambda fields: {"success": True, "n": int(fields["n"])})
    fake.add_fault(Fault("status", status=503, retry_after=7, path="/leads/insert", times=1))
    async with connect(fake, "transport") as http:
        unavailable = await http.post("/leads/insert", data={"auth_token": TOKEN, "n": "1"})
        ok = await http.post("/leads/insert", data={"auth_token": TOKEN, "n": "2"})
        broken = await http.post("/leads/insert", data={"auth_token": TOKEN})

    assert (unavailable.status_code, unavailable.headers["retry-after"]) == (503, "7")
    assert ok.json() == {"success": True, "n": 2}
    assert broken.status_code == 500
    assert "KeyError in the handler of /leads/insert" in broken.text
    with pytest.raises(ValueError, match="fake's own"):
        fake.add_endpoint("/campaigns/status")


@pytest.mark.anyio
async def test_a_path_outside_v1_is_not_found_as_on_convoso(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=1)
    async with httpx2.AsyncClient(transport=fake.transport(), base_url="https://f.test") as http:
        bare = await http.post(SEARCH, data={"auth_token": TOKEN})
        prefixed = await http.post("/v1" + SEARCH, data={"auth_token": TOKEN})

    assert bare.status_code == 404
    assert bare.json() == {"success": False, "error": "Not found"}
    assert [c["id"] for c in prefixed.json()["data"]] == ["1001"]
    assert [(r.path, r.status) for r in fake.requests] == [(SEARCH, 404), (SEARCH, 200)]


@pytest.mark.anyio
async def test_token_in_url_query_is_accepted_and_flagged(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=1)
    async with connect(fake, "transport") as http:
        await http.post(STATUS, params=status_form("1001", "false"))
        await http.post(STATUS, data=status_form("1001", "true"))

    first, second = fake.requests
    assert first.token_in_query
    assert first.token_ok
    assert first.form["status"] == "false"
    assert not second.token_in_query
    assert fake.campaign_status("1001") == "Y"


@pytest.mark.anyio
async def test_json_body_is_not_read_as_form_fields(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=1)
    async with connect(fake, "transport") as http:
        response = await http.post(STATUS, json=status_form("1001", "false"))

    assert response.json()["error"] == "Invalid authentication token"
    assert fake.campaign_status("1001") == "Y"


# -- server-side rate limit --------------------------------------------------------------


@pytest.mark.anyio
async def test_rate_limit_answers_429_with_retry_after(anyio_backend: str, front: str) -> None:
    fake = FakeConvoso(campaigns=1, rate_limit=5, retry_after=0.2)
    async with connect(fake, front) as http:
        answers = [await http.post(STATUS, data=status_form("1001", "false")) for _ in range(8)]
        await http.post(SEARCH, data={"auth_token": TOKEN})

    records = fake.requests
    limited = [a for a in answers if a.status_code == 429]
    assert fake.max_in_window() <= 5
    # The burst fits in one second short of a stalled machine; only then must
    # exactly the last three have been turned away.
    if records[7].time - records[0].time < 1.0:
        assert [r.status for r in records[:8]] == [200] * 5 + [429] * 3
        assert fake.max_in_window() == 5
        assert fake.max_in_window(accepted_only=False) == 8
    for answer in limited:
        assert answer.headers["retry-after"] == "1"  # ceil(0.2), at least 1
        assert answer.json() == {"success": False, "error": "Too many requests"}
    assert fake.max_in_window(path=SEARCH, accepted_only=False) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the window is backend-neutral
async def test_rate_limit_window_slides(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=1, rate_limit=2, retry_after=3)
    async with connect(fake, "transport") as http:
        for _ in range(3):
            await http.post(SEARCH, data={"auth_token": TOKEN})
        await anyio.sleep(1.05)
        later = await http.post(SEARCH, data={"auth_token": TOKEN})

    records = fake.requests
    assert later.status_code == 200
    assert records[-1].accepted
    assert fake.max_in_window(path=None) <= 2
    if records[2].time - records[0].time < 1.0:
        assert records[2].status == 429


def test_rate_limited_status_does_not_change_state() -> None:
    fake = FakeConvoso(campaigns=1, rate_limit=1)
    with fake.serve_in_thread() as url, httpx2.Client(base_url=url, timeout=10) as http:
        http.post(SEARCH, data={"auth_token": TOKEN})
        second = http.post(STATUS, data=status_form("1001", "false"))

    records = fake.requests
    if records[1].time - records[0].time < 1.0:
        assert second.status_code == 429
        assert fake.campaign_status("1001") == "Y"
        assert records[1].status == 429
        assert not records[1].accepted


# -- scripted faults -------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("template", "status", "content_type", "body"),
    [
        (
            Fault("status"),
            503,
            "text/html",
            "<html><body><h1>503 Service Unavailable</h1></body></html>",
        ),
        (
            Fault("status", status=502),
            502,
            "text/html",
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        ),
        (Fault("bad_json"), 200, "text/html", "<html>oops</html>"),
        (Fault("bad_shape"), 200, "application/json", '{"status":"ok"}'),
    ],
    ids=["503", "502", "bad_json", "bad_shape"],
)
async def test_fault_answers_instead_of_the_api(
    anyio_backend: str, front: str, template: Fault, status: int, content_type: str, body: str
) -> None:
    fake = FakeConvoso(campaigns=1)
    fault = fake.add_fault(attrs.evolve(template))  # a fresh copy: faults count their hits
    async with connect(fake, front) as http:
        response = await http.post(STATUS, data=status_form("1001", "false"))

    assert response.status_code == status
    assert response.headers["content-type"].startswith(content_type)
    assert response.text == body
    assert fake.campaign_status("1001") == "Y"
    assert fault.hits == 1
    assert fake.requests[0].fault == fault.kind


@pytest.mark.anyio
async def test_bad_shape_on_search_is_not_a_list(anyio_backend: str, front: str) -> None:
    fake = FakeConvoso(campaigns=1)
    fake.add_fault(Fault("bad_shape"))
    async with connect(fake, front) as http:
        response = await http.post(SEARCH, data={"auth_token": TOKEN})

    assert response.json() == {"data": {"unexpected": 1}}


@pytest.mark.anyio
@pytest.mark.parametrize("template", [Fault("rate_limit"), Fault("status", status=429)])
async def test_429_faults_carry_retry_after(
    anyio_backend: str, front: str, template: Fault
) -> None:
    fake = FakeConvoso(campaigns=1, retry_after=2.5)
    fake.add_fault(attrs.evolve(template))
    async with connect(fake, front) as http:
        response = await http.post(STATUS, data=status_form("1001", "false"))

    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert fake.campaign_status("1001") == "Y"
    assert fake.requests[0].status == 429


@pytest.mark.anyio
async def test_fault_retry_after_overrides_the_fakes(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=1, retry_after=9)
    fake.add_fault(Fault("rate_limit", retry_after=0))
    async with connect(fake, "transport") as http:
        response = await http.post(SEARCH, data={"auth_token": TOKEN})

    assert response.headers["retry-after"] == "1"


@pytest.mark.anyio
async def test_drop_is_a_transport_error_and_changes_nothing(
    anyio_backend: str, front: str
) -> None:
    fake = FakeConvoso(campaigns=1)
    fake.add_fault(Fault("drop", times=1))
    async with connect(fake, front) as http:
        with pytest.raises(httpx2.TransportError):
            await http.post(STATUS, data=status_form("1001", "false"))
        assert fake.campaign_status("1001") == "Y"
        again = await http.post(STATUS, data=status_form("1001", "false"))

    assert again.json() == {"success": True}
    assert fake.campaign_status("1001") == "N"
    assert [(r.status, r.fault) for r in fake.requests] == [(0, "drop"), (200, None)]


@pytest.mark.anyio
async def test_slow_fault_answers_normally_after_its_delay(anyio_backend: str, front: str) -> None:
    fake = FakeConvoso(campaigns=1)
    fake.add_fault(Fault("slow", delay=0.3))
    async with connect(fake, front) as http:
        started = anyio.current_time()
        response = await http.post(STATUS, data=status_form("1001", "false"))
        elapsed = anyio.current_time() - started

    assert elapsed >= 0.29
    assert response.json() == {"success": True}
    assert fake.campaign_status("1001") == "N"
    assert fake.requests[0].fault == "slow"
    assert fake.requests[0].accepted


@pytest.mark.anyio
async def test_slow_fault_trips_the_client_read_timeout(anyio_backend: str, front: str) -> None:
    fake = FakeConvoso(campaigns=1)
    fake.add_fault(Fault("slow", delay=5.0, times=1))
    async with connect(fake, front) as http:
        with pytest.raises(httpx2.ReadTimeout):
            await http.post(SEARCH, data={"auth_token": TOKEN}, timeout=0.2)
        after = await http.post(SEARCH, data={"auth_token": TOKEN})

    assert after.status_code == 200
    # In-process, the abandoned request is cancelled and leaves the count; a
    # real server keeps handling it, as servers do when a client gives up.
    assert fake.requests[1].in_flight == (1 if front == "transport" else 2)


@pytest.mark.anyio
async def test_latency_is_added_to_every_answer(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=1, latency=(0.2, 0.3))
    async with connect(fake, "transport") as http:
        started = anyio.current_time()
        await http.post(SEARCH, data={"auth_token": "wrong"})
        elapsed = anyio.current_time() - started

    assert elapsed >= 0.19


@pytest.mark.anyio
async def test_faults_select_by_request_number(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=1)
    fault = fake.add_fault(Fault("status", on_requests={2, 4}))
    async with connect(fake, "transport") as http:
        codes = [
            (await http.post(SEARCH, data={"auth_token": TOKEN})).status_code for _ in range(5)
        ]

    assert codes == [200, 503, 200, 503, 200]
    assert fault.hits == 2


@pytest.mark.anyio
async def test_faults_select_by_campaign_and_path_together(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=2)
    fault = fake.add_fault(Fault("status", campaign_id="1002", path="/v1/campaigns/status"))
    async with connect(fake, "transport") as http:
        hit = await http.post(STATUS, data=status_form("1002", "false"))
        other_campaign = await http.post(STATUS, data=status_form("1001", "false"))
        other_path = await http.post(SEARCH, data={"auth_token": TOKEN, "campaign_id": "1002"})

    assert (hit.status_code, other_campaign.status_code, other_path.status_code) == (503, 200, 200)
    assert fake.statuses() == {"1001": "N", "1002": "Y"}
    assert fault.hits == 1
    assert [r.campaign_id for r in fake.requests] == ["1002", "1001", "1002"]


@pytest.mark.anyio
async def test_fault_is_spent_after_times(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=1)
    fault = fake.add_fault(Fault("bad_json", times=2))
    async with connect(fake, "transport") as http:
        types = [
            (await http.post(SEARCH, data={"auth_token": TOKEN})).headers["content-type"]
            for _ in range(4)
        ]

    assert [t.startswith("text/html") for t in types] == [True, True, False, False]
    assert fault.hits == 2
    assert fault.spent


async def _probability_pattern(seed: int) -> list[bool]:
    fake = FakeConvoso(campaigns=1, seed=seed)
    fake.add_fault(Fault("status", probability=0.5))
    async with connect(fake, "transport") as http:
        for _ in range(40):
            await http.post(SEARCH, data={"auth_token": TOKEN})
    return [r.fault is not None for r in fake.requests]


@pytest.mark.anyio
async def test_probability_faults_are_reproducible_by_seed(anyio_backend: str) -> None:
    first = await _probability_pattern(seed=7)
    again = await _probability_pattern(seed=7)
    other = await _probability_pattern(seed=8)

    assert first == again
    assert first != other
    assert 0 < sum(first) < 40


def test_fault_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="kind"):
        Fault("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="probability"):
        Fault("drop", probability=1.5)
    with pytest.raises(ValueError, match="1-based"):
        Fault("drop", on_requests={0})
    with pytest.raises(ValueError, match="times"):
        Fault("drop", times=0)
    with pytest.raises(ValueError, match="status"):
        Fault("status", status=99)


# -- records ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_in_flight_reaches_the_number_of_concurrent_requests(
    anyio_backend: str, front: str
) -> None:
    fake = FakeConvoso(campaigns=8)
    # Held far longer than the test waits, so no request can finish before
    # all have arrived, however slow the machine; the test then cancels them.
    fake.add_fault(Fault("slow", delay=60))
    async with connect(fake, front) as http, anyio.create_task_group() as tg:
        for number in range(8):
            form = status_form(str(1001 + number), "false")
            tg.start_soon(functools.partial(http.post, STATUS, data=form))
        # Polled: the server front records from its own thread, no event to await.
        with anyio.fail_after(15):
            while len(fake.requests) < 8:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()

    records = fake.requests
    assert len(records) == 8
    assert max(r.in_flight for r in records) == 8
    assert set(fake.statuses().values()) == {"N"}


@pytest.mark.anyio
async def test_token_never_appears_in_records_or_reprs(anyio_backend: str) -> None:
    secret, readonly = "s3cret-full-token", "s3cret-readonly-token"
    fake = FakeConvoso(campaigns=2, tokens=(secret,), readonly_tokens=(readonly,))
    fault = fake.add_fault(Fault("status", on_requests={4}))
    async with connect(fake, "transport") as http:
        await http.post(STATUS, data=status_form("1001", "false", token=secret))
        await http.post(STATUS, params=status_form("1002", "false", token=secret))
        await http.post(STATUS, data=status_form("1001", "true", token=readonly))
        await http.post(SEARCH, data={"auth_token": secret})
        await http.post(SEARCH, data={"auth_token": "s3cret-wrong-token"})

    records = fake.requests
    assert len(records) == 5
    assert all(r.form["auth_token"] == "***" for r in records)
    texts = [repr(fake), repr(records), str(records), repr(fault), repr(fake.transport())]
    texts += [repr(r.form) for r in records]
    assert not any("s3cret" in text for text in texts)


@pytest.mark.anyio
async def test_reset_requests_restarts_numbering(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=1)
    async with connect(fake, "transport") as http:
        await http.post(SEARCH, data={"auth_token": TOKEN})
        await http.post(SEARCH, data={"auth_token": TOKEN})
        fake.reset_requests()
        fake.add_fault(Fault("status", on_requests={1}))
        response = await http.post(SEARCH, data={"auth_token": TOKEN})

    assert response.status_code == 503
    assert [r.seq for r in fake.requests] == [1]


@pytest.mark.anyio
async def test_requests_are_a_snapshot(anyio_backend: str) -> None:
    fake = FakeConvoso()
    async with connect(fake, "transport") as http:
        await http.post(SEARCH, data={"auth_token": TOKEN})
        snapshot = fake.requests
        snapshot.clear()
        await http.post(SEARCH, data={"auth_token": TOKEN})

    assert snapshot == []
    assert all(isinstance(r, RecordedRequest) for r in fake.requests)
    assert [r.seq for r in fake.requests] == [1, 2]


def test_constructor_rejects_bad_configuration() -> None:
    with pytest.raises(TypeError, match="single str"):
        FakeConvoso(tokens="abc")
    with pytest.raises(ValueError, match="twice"):
        FakeConvoso(campaigns=[{"id": "1", "status": "Y"}, {"id": 1, "status": "N"}])
    with pytest.raises(ValueError, match="status"):
        FakeConvoso(campaigns=[{"id": "1", "status": "active"}])
    with pytest.raises(ValueError, match="latency"):
        FakeConvoso(latency=(0.5, 0.1))
    with pytest.raises(ValueError, match="rate_limit"):
        FakeConvoso(rate_limit=0)
    with pytest.raises(KeyError):
        FakeConvoso(campaigns=1).campaign_status("nope")


# -- the in-process transport, for either client family -------------------------------


@contextlib.asynccontextmanager
async def old_httpx_client(fake: FakeConvoso) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx (not httpx2) client on the fake's transport for its family."""
    async with httpx.AsyncClient(
        transport=fake.transport(family="httpx"), base_url="https://fake.test/v1"
    ) as client:
        yield client


@pytest.mark.anyio
async def test_httpx_family_transport_answers_an_httpx_client(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=2)
    async with old_httpx_client(fake) as http:
        change = await http.post(STATUS, data=status_form("1001", "false"))
        search = await http.post(SEARCH, data={"auth_token": TOKEN})

    assert isinstance(change, httpx.Response)
    assert change.json() == {"success": True}
    assert [c["status"] for c in search.json()["data"]] == ["N", "Y"]
    assert "s3cret" not in repr(fake.transport(family="httpx"))


@pytest.mark.anyio
async def test_each_family_gets_its_own_errors_for_drop_and_read_timeout(
    anyio_backend: str,
) -> None:
    fake = FakeConvoso(campaigns=1)
    for _ in range(2):  # one drop and one slow answer for each family
        fake.add_fault(Fault("drop", times=1))
        fake.add_fault(Fault("slow", delay=5.0, times=1))
    async with old_httpx_client(fake) as old:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await old.post(STATUS, data=status_form("1001", "false"))
        with pytest.raises(httpx.ReadTimeout):
            await old.post(SEARCH, data={"auth_token": TOKEN}, timeout=0.2)
    async with connect(fake, "transport") as new:
        with pytest.raises(httpx2.RemoteProtocolError, match="without sending a response"):
            await new.post(STATUS, data=status_form("1001", "false"))
        with pytest.raises(httpx2.ReadTimeout):
            await new.post(SEARCH, data={"auth_token": TOKEN}, timeout=0.2)
        after = await new.post(STATUS, data=status_form("1001", "false"))

    assert after.json() == {"success": True}
    assert [r.fault for r in fake.requests] == ["drop", "slow", "drop", "slow", None]


def test_transport_family_must_be_httpx2_or_httpx() -> None:
    with pytest.raises(ValueError, match="'httpx2' or 'httpx'"):
        FakeConvoso().transport(family="requests")  # type: ignore[call-overload]


#: Runs in a child process where importing httpx or aiohttp fails.
WITHOUT_HTTPX_OR_AIOHTTP = """
import sys

import convoso_async  # the client may still use them; the fake must not

for name in ("httpx", "aiohttp"):
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]
    sys.modules[name] = None  # from here on, importing it fails

import anyio
import httpx2

from convoso_async.testing import FakeConvoso, Fault

fake = FakeConvoso(campaigns=1)
fake.add_fault(Fault("drop", on_requests={2}))


async def main() -> None:
    async with httpx2.AsyncClient(transport=fake.transport(), base_url="https://f/v1") as http:
        assert (await http.post("/campaigns/search", data={"auth_token": "test-token"})).is_success
    async with fake.serve() as url, httpx2.AsyncClient(base_url=url) as http:
        try:
            await http.post("/campaigns/search", data={"auth_token": "test-token"})
        except httpx2.RemoteProtocolError:
            pass
        assert (await http.post("/campaigns/search", data={"auth_token": "test-token"})).is_success


anyio.run(main)
try:
    fake.transport(family="httpx")
except ModuleNotFoundError as exc:
    print(exc)
"""


def test_the_fake_needs_neither_httpx_nor_aiohttp() -> None:
    child = subprocess.run(
        [sys.executable, "-c", WITHOUT_HTTPX_OR_AIOHTTP],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert child.returncode == 0, child.stderr
    assert "httpx is not installed: pip install httpx" in child.stdout


# -- the real server's lifecycle ----------------------------------------------------------


def _server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fake-convoso-server"]


def _port_is_closed(url: str) -> bool:
    port = httpx2.URL(url).port
    assert port is not None
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_serve_in_thread_serves_sync_code_and_cleans_up() -> None:
    fake = FakeConvoso(campaigns=3)
    with fake.serve_in_thread() as url:
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/v1")
        assert len(_server_threads()) == 1
        with httpx2.Client(base_url=url, timeout=10) as http:
            http.post(STATUS, data=status_form("1003", "True"))  # as the reference's loop sends it

    assert fake.campaign_status("1003") == "Y"
    assert _server_threads() == []
    assert _port_is_closed(url)


@pytest.mark.anyio
async def test_serve_stops_even_with_requests_in_flight(anyio_backend: str) -> None:
    fake = FakeConvoso(campaigns=1)
    fake.add_fault(Fault("slow", delay=30))
    with anyio.fail_after(10):
        async with (
            fake.serve() as url,
            httpx2.AsyncClient(base_url=url) as http,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(functools.partial(http.post, SEARCH, data={"auth_token": TOKEN}))
            await anyio.sleep(0.1)
            tg.cancel_scope.cancel()

    assert _server_threads() == []
    assert _port_is_closed(url)


def test_serve_reports_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"), FakeConvoso().serve_in_thread(port=port):
            pass
    assert _server_threads() == []


# -- the real server's HTTP/1.1 connections --------------------------------------------

#: How long a test waits for something that takes milliseconds, on a loaded machine too.
PATIENCE = 30.0
FORM_TYPE = "application/x-www-form-urlencoded"
on_each_server_backend = pytest.mark.parametrize("backend", ["asyncio", "trio"])


class RawResponse(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(
    path: str, form: dict[str, str], *, headers: tuple[str, ...] = (), method: str = "POST"
) -> bytes:
    """The bytes of one form POST to the fake's ``/v1`` ``path``."""
    body = urlencode(form).encode()
    lines = [
        f"{method} /v1{path} HTTP/1.1",
        "Host: fake.test",
        f"Content-Type: {FORM_TYPE}",
        f"Content-Length: {len(body)}",
        *headers,
    ]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


def parse_responses(data: bytes) -> tuple[list[RawResponse], bytes]:
    """The whole responses at the start of ``data``, and the bytes after them."""
    responses = []
    while (end := data.find(b"\r\n\r\n")) >= 0:
        status_line, *lines = data[:end].decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(data) < end + 4 + length:
            break
        body = data[end + 4 : end + 4 + length]
        responses.append(RawResponse(int(status_line.split()[1]), headers, body))
        data = data[end + 4 + length :]
    return responses, data


@contextlib.contextmanager
def raw_socket(url: str, *, receive_buffer: int | None = None) -> Iterator[socket.socket]:
    """A TCP connection to the server of ``url``; ``receive_buffer`` shrinks its window."""
    address = urlsplit(url)
    assert address.hostname is not None
    assert address.port is not None
    with socket.socket() as sock:
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(PATIENCE)
        sock.connect((address.hostname, address.port))
        yield sock


def read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_responses(sock: socket.socket, count: int) -> list[RawResponse]:
    """Read until ``count`` whole responses have come, leaving the connection open."""
    data = b""
    while len(responses := parse_responses(data)[0]) < count:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {len(responses)} answers"
        data += chunk
    return responses


def closed_without_answer(sock: socket.socket) -> bool:
    """Whether the server hung up without sending a byte (a FIN, or a reset)."""
    try:
        return read_to_eof(sock) == b""
    except ConnectionResetError:
        return True


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, "waited in vain"
        time.sleep(0.01)


@on_each_server_backend
def test_keep_alive_answers_many_requests_on_one_connection(backend: ServerBackend) -> None:
    fake = FakeConvoso(campaigns=3)
    with fake.serve_in_thread(backend=backend) as url:
        address = urlsplit(url)
        connection = HTTPConnection(address.hostname or "", address.port, timeout=PATIENCE)
        try:
            connection.connect()
            first_socket = connection.sock
            for number in range(50):
                form = status_form("1001", "false" if number % 2 else "true")
                headers = {"Content-Type": FORM_TYPE}
                connection.request("POST", "/v1" + STATUS, urlencode(form), headers)
                response = connection.getresponse()
                assert (response.status, json.loads(response.read())) == (200, {"success": True})
                assert connection.sock is first_socket  # http.client reconnects after a close
        finally:
            connection.close()

    assert len(fake.requests) == 50
    assert fake.campaign_status("1001") == "N"


@on_each_server_backend
def test_pipelined_requests_are_answered_in_order_and_close_ends_the_connection(
    backend: ServerBackend,
) -> None:
    fake = FakeConvoso(campaigns=2)
    with fake.serve_in_thread(backend=backend) as url, raw_socket(url) as sock:
        sock.sendall(
            raw_request(STATUS, status_form("1001", "false"))
            + raw_request(SEARCH, {"auth_token": TOKEN})
            + raw_request(STATUS, status_form("1002", "false"), headers=("Connection: close",))
        )
        responses, rest = parse_responses(read_to_eof(sock))  # the end of stream: closed

    assert [r.status for r in responses] == [200, 200, 200]
    assert json.loads(responses[0].body) == {"success": True}
    assert [c["status"] for c in json.loads(responses[1].body)["data"]] == ["N", "Y"]
    assert json.loads(responses[2].body) == {"success": True}
    assert responses[2].headers["connection"] == "close"
    assert {r.headers["server"] for r in responses} == {"convoso-async-fake"}
    assert all(r.headers["date"].endswith(" GMT") for r in responses)
    assert rest == b""
    assert [r.campaign_id for r in fake.requests] == ["1001", None, "1002"]


@on_each_server_backend
def test_connection_close_answers_in_full_though_the_client_sends_more(
    backend: ServerBackend,
) -> None:
    fake = FakeConvoso(campaigns=20_000)  # a search answer of about 2 MB
    with (
        fake.serve_in_thread(backend=backend) as url,
        raw_socket(url, receive_buffer=4096) as sock,  # read slowly: the answer waits
    ):
        sock.sendall(raw_request(SEARCH, {"auth_token": TOKEN}, headers=("Connection: close",)))
        time.sleep(0.3)  # the server has answered, and is closing
        # Input the server never reads would make its close a reset, losing the answer.
        sock.sendall(raw_request(SEARCH, {"auth_token": TOKEN}))
        (response,), rest = parse_responses(read_to_eof(sock))

    assert response.status == 200
    assert len(json.loads(response.body)["data"]) == 20_000
    assert rest == b""
    assert len(fake.requests) == 1


@on_each_server_backend
def test_a_drop_closes_the_connection_without_a_byte(backend: ServerBackend) -> None:
    fake = FakeConvoso(campaigns=1)
    fake.add_fault(Fault("drop", times=1))
    with fake.serve_in_thread(backend=backend) as url:
        with raw_socket(url) as sock:
            sock.sendall(raw_request(STATUS, status_form("1001", "false")))
            dropped = read_to_eof(sock)
        with raw_socket(url) as sock:
            sock.sendall(raw_request(STATUS, status_form("1001", "false")))
            (again,) = read_responses(sock, 1)

    assert dropped == b""
    assert json.loads(again.body) == {"success": True}
    assert [(r.status, r.fault) for r in fake.requests] == [(0, "drop"), (200, None)]


@on_each_server_backend
def test_a_request_whose_client_has_hung_up_is_not_handled(backend: ServerBackend) -> None:
    fake = FakeConvoso(campaigns=2)
    fake.add_fault(Fault("slow", delay=0.3, on_requests={1}))
    with fake.serve_in_thread(backend=backend) as url:
        with raw_socket(url) as sock:
            sock.sendall(
                raw_request(STATUS, status_form("1001", "false"))
                + raw_request(STATUS, status_form("1002", "false"))
            )
            wait_until(lambda: len(fake.requests) == 1)  # the first is being answered
        time.sleep(1.0)  # the client has hung up; the second's turn has long come

    assert [r.campaign_id for r in fake.requests] == ["1001"]
    assert fake.statuses() == {"1001": "N", "1002": "Y"}


@on_each_server_backend
def test_clients_that_hang_up_mid_request_or_send_garbage_leave_the_server_serving(
    backend: ServerBackend,
) -> None:
    fake = FakeConvoso(campaigns=1)
    whole = raw_request(STATUS, status_form("1001", "false"))
    head_only = whole[: whole.index(b"\r\n\r\n") + 4]
    with fake.serve_in_thread(backend=backend) as url:
        for part in (whole[:20], head_only, whole[:-5]):
            with raw_socket(url) as sock:
                sock.sendall(part)
        with raw_socket(url) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            refused = read_to_eof(sock)
        with httpx2.Client(base_url=url, timeout=PATIENCE) as http:
            after = http.post(STATUS, data=status_form("1001", "false"))

    assert refused.startswith(b"HTTP/1.1 400 ")
    assert after.json() == {"success": True}
    assert len(fake.requests) == 1  # no part of a request reached the API


def test_expect_100_continue_is_answered_before_the_body() -> None:
    fake = FakeConvoso(campaigns=1)
    request = raw_request(
        STATUS, status_form("1001", "false"), headers=("Expect: 100-continue", "Connection: close")
    )
    head, _, body = request.partition(b"\r\n\r\n")
    with fake.serve_in_thread() as url, raw_socket(url) as sock:
        sock.sendall(head + b"\r\n\r\n")
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(65536)
        sock.sendall(body)
        (response,), _ = parse_responses(read_to_eof(sock))

    assert interim.startswith(b"HTTP/1.1 100 ")
    assert json.loads(response.body) == {"success": True}
    assert fake.campaign_status("1001") == "N"


def test_a_body_over_a_megabyte_is_refused_with_413() -> None:
    fake = FakeConvoso(campaigns=1)
    huge = {"auth_token": TOKEN, "padding": "x" * (2 * 1024 * 1024)}
    with fake.serve_in_thread() as url, raw_socket(url) as sock:
        sock.sendall(raw_request(SEARCH, huge))
        (response,), _ = parse_responses(read_to_eof(sock))

    assert response.status == 413
    assert fake.requests == []


@pytest.mark.anyio
async def test_head_is_405_without_a_body_and_the_connection_carries_on(
    anyio_backend: str,
) -> None:
    fake = FakeConvoso(campaigns=1)
    async with connect(fake, "server") as http:
        head = await http.head(SEARCH)
        after = await http.post(SEARCH, data={"auth_token": TOKEN})

    assert (head.status_code, head.content) == (405, b"")
    assert after.status_code == 200


@on_each_server_backend
def test_stopping_closes_idle_half_sent_and_waiting_connections(backend: ServerBackend) -> None:
    fake = FakeConvoso(campaigns=1)
    fake.add_fault(Fault("slow", delay=60, path=STATUS))
    with contextlib.ExitStack() as sockets:
        with fake.serve_in_thread(backend=backend) as url:
            idle, half_sent, waiting = (sockets.enter_context(raw_socket(url)) for _ in range(3))
            idle.sendall(raw_request(SEARCH, {"auth_token": TOKEN}))
            (answered,) = read_responses(idle, 1)
            half_sent.sendall(raw_request(SEARCH, {"auth_token": TOKEN})[:30])
            waiting.sendall(raw_request(STATUS, status_form("1001", "false")))
            wait_until(lambda: len(fake.requests) == 2)
        # Leaving serve_in_thread stops the server; that raises if the thread outlives its bound.
        closed = [closed_without_answer(sock) for sock in (idle, half_sent, waiting)]

    assert answered.status == 200
    assert closed == [True, True, True]
    assert _server_threads() == []
    assert _port_is_closed(url)


def test_serving_on_an_unknown_event_loop_is_refused() -> None:
    with (
        pytest.raises(ValueError, match="backend must be one of"),
        FakeConvoso().serve_in_thread(backend="curio"),  # type: ignore[arg-type]
    ):
        pass


# -- the command line ------------------------------------------------------------------


@contextlib.contextmanager
def _running_cli(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    with _running([sys.executable, "-m", "convoso_async.testing", "--port", "0", *args]) as run:
        yield run


@contextlib.contextmanager
def _running(command: list[str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``command`` in a child process, and the first line it prints."""
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=20), "the fake server printed nothing in 20 s"
        yield proc, proc.stdout.readline()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_cli_prints_url_answers_and_stops_on_sigterm() -> None:
    with _running_cli("--campaigns", "4", "--token", "cli-token") as (proc, line):
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.removeprefix("listening on ").strip()
        assert url.endswith("/v1")
        response = httpx2.post(url + SEARCH, data={"auth_token": "cli-token"}, timeout=10)
        assert [c["id"] for c in response.json()["data"]] == ["1001", "1002", "1003", "1004"]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout is not None
        rest = proc.stdout.read().splitlines()
        assert rest[0] == "token cli-token"
        hint = f"try: CONVOSO_BASE_URL={url} CONVOSO_AUTH_TOKEN=cli-token convoso campaigns list"
        assert rest[1] == hint
        assert len(rest) == 2


SERVE_FOREVER_ON_TRIO = """
from convoso_async.testing import FakeConvoso, serve_forever
serve_forever(FakeConvoso(campaigns=2), backend="trio")
"""


def test_serve_forever_on_trio_prints_url_answers_and_stops_on_sigint() -> None:
    with _running([sys.executable, "-c", SERVE_FOREVER_ON_TRIO]) as (proc, line):
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.removeprefix("listening on ").strip()
        response = httpx2.post(url + SEARCH, data={"auth_token": TOKEN}, timeout=10)
        assert [c["id"] for c in response.json()["data"]] == ["1001", "1002"]

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout is not None
        assert proc.stdout.read().splitlines()[0] == f"token {TOKEN}"
        assert proc.stderr is not None
        assert proc.stderr.read() == ""  # no KeyboardInterrupt traceback: the signal was caught


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--port", "70000"],
        ["--rate", "0"],
        ["--latency", "0.2,0.1"],
        ["--campaigns", "x"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "port must be 0-65535" in capsys.readouterr().err


def test_cli_parser_can_be_reused_under_another_name() -> None:
    parser = build_arg_parser("convoso fake-server")
    args = parser.parse_args(["--latency", "0.01,0.02", "--token", "a", "--token", "b"])
    assert parser.prog == "convoso fake-server"
    assert args.latency == (0.01, 0.02)
    assert args.token == ["a", "b"]
