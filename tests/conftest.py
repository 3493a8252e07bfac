"""Shared fixtures: both event loops, a respx router, a client wired to it; the CLI on the fake."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import anyio.lowlevel
import httpx
import hypothesis_profiles  # noqa: F401  (loads the Hypothesis profile before any test)
import pytest
import respx

import convoso_async
from convoso_async import AsyncConvoso
from convoso_async.testing import FakeConvoso

BASE_URL = "https://api.test.invalid/v1"
TOKEN = "tok-SECRET-5f1e2d3c4b"

# The API reference's search example, verbatim.
REFERENCE_SEARCH_ANSWER = """{
"data": [
{
"id": "111",
"name": "Sales Campaign",
"status": "Y",
"last_call_date": {
"date": "2026-03-03",
"timezone_type": 3,
"timezone": "America/Denver"
}
},
{
"id": "222",
"name": "Customer Service",
"status": "N",
"last_call_date": {
"date": "2026-03-02",
"timezone_type": 3,
"timezone": "America/Denver"
}
},
{
"id": "333",
"name": "Retention Campaign",
"status": "Y",
"last_call_date": {
"date": "2026-03-03",
"timezone_type": 3,
"timezone": "America/Denver"
}
}
]
}"""


class CountingLimiter:
    """A limiter of one's own (anything with ``async acquire()`` plugs in) that counts grants."""

    def __init__(self) -> None:
        self.acquired = 0

    async def acquire(self) -> None:
        await anyio.lowlevel.checkpoint()
        self.acquired += 1


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def instant_retries() -> Iterator[None]:
    """Retries still happen, without sleeping."""
    with convoso_async.set_testing():
        yield


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed again): connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE_URL, assert_all_called=False, using="httpx") as router:
        yield router


@pytest.fixture
async def convoso(api: respx.MockRouter) -> AsyncIterator[AsyncConvoso]:
    """A client on a stock httpx client, which respx intercepts."""
    async with httpx.AsyncClient() as http:
        client = AsyncConvoso(TOKEN, base_url=BASE_URL, http_client=http, max_retries=3)
        yield client
        await client.aclose()


def cli_command(*argv: str) -> list[str]:
    """``python -m convoso_async.cli ARGV...``: the `convoso` command as a child process."""
    return [sys.executable, "-m", "convoso_async.cli", *argv]


def cli_env(url: str, **extra: str) -> dict[str, str]:
    """This environment, plus the fake's token and ``url`` as the API root, for a child process."""
    return {**os.environ, "CONVOSO_AUTH_TOKEN": FakeConvoso.TOKEN, "CONVOSO_BASE_URL": url, **extra}


@contextmanager
def serving_cli(fake: FakeConvoso, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Serve ``fake`` on loopback for in-process `main` runs; yield its URL.

    Retries do not sleep, and the token and base-URL variables point at the fake.
    """
    with convoso_async.set_testing(), fake.serve_in_thread() as url:
        monkeypatch.setenv("CONVOSO_AUTH_TOKEN", fake.TOKEN)
        monkeypatch.setenv("CONVOSO_BASE_URL", url)
        yield url
