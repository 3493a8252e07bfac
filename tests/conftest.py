"""Shared fixtures: both event loops, instant retries, a respx router, a client wired to it.

Also the sync client's watchdog: a test of `Convoso` that blocks fails, with every thread's stack.

Fixtures only (pytest finds them here); what tests import lives in modules named for what it
provides: ``mocked_api``, ``reference_answers``, ``limiters``, ``cli_runner``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import hypothesis_profiles  # noqa: F401  (loads the Hypothesis profile before any test)
import pytest
import respx
from mocked_api import BASE_URL, TOKEN

import convoso_async
from convoso_async import AsyncConvoso

#: A test of the sync client (``test_sync*.py``) that runs longer than this has hung: its
#: work takes a few seconds at most. pytest-timeout's signal method fails it with every
#: thread's stack (the loop thread's too), and the run goes on.
SYNC_WATCHDOG = 45.0


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Two rules for the collected tests.

    - The sync client's tests (``test_sync*.py``) get a watchdog: blocked longer than
      ``SYNC_WATCHDOG`` seconds, a test fails with every thread's stack.
    - Tests marked ``timing`` go first, in one pytest-xdist group: under ``--dist loadgroup``
      one worker runs them one after another from the start, never two at once, while the
      other workers share the rest. (Without xdist the order is all that changes.)
    """
    for item in items:
        if item.path.name.startswith("test_sync") and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SYNC_WATCHDOG, method="signal"))
    timing = [item for item in items if item.get_closest_marker("timing") is not None]
    for item in timing:
        item.add_marker(pytest.mark.xdist_group("timing"))
    chosen = set(timing)
    items[:] = timing + [item for item in items if item not in chosen]


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
