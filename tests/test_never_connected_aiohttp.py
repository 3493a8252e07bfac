"""Whether a failed request could have reached the server, as aiohttp's errors say it.

Where aiohttp sends (the ``transport="aiohttp"`` opt-in, or a caller's httpx client on
httpx-aiohttp), aiohttp's own error decides, wherever it is in the chain. Needs the aiohttp
extra (``nox -s matrix`` installs it).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

aiohttp = pytest.importorskip("aiohttp")

from raised_errors import raised as _raised  # noqa: E402

from convoso_async._http.transport_errors import aiohttp_send_error, send_error  # noqa: E402


@pytest.mark.parametrize(
    ("cause", "unsent"),
    [
        # httpx-aiohttp maps every aiohttp connection error, a dropped keep-alive one too,
        # to httpx.ConnectTimeout: aiohttp's own error decides, wherever it is in the chain.
        (aiohttp.ServerDisconnectedError(), False),
        (_raised(aiohttp.ClientOSError(104, "reset"), ConnectionResetError(104, "reset")), False),
        (aiohttp.ConnectionTimeoutError("Connection timeout to host"), True),
    ],
)
def test_a_caller_client_on_aiohttp_is_judged_by_aiohttp_s_own_error(
    cause: BaseException, unsent: bool
) -> None:
    error = send_error(_raised(httpx.ConnectTimeout("mapped"), cause))
    assert error.never_connected is unsent


@pytest.mark.parametrize(
    ("error", "kind", "unsent"),
    [
        (aiohttp.ConnectionTimeoutError("Connection timeout to host"), "timeout", True),
        (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), "timeout", False),
        (asyncio.TimeoutError(), "timeout", False),
        (aiohttp.ServerDisconnectedError(), "connection", False),
        (aiohttp.ClientPayloadError("cut short"), "connection", False),
    ],
)
def test_an_aiohttp_error_says_the_same_as_httpx2_s(
    error: BaseException, kind: str, unsent: bool
) -> None:
    sent = aiohttp_send_error(error)
    assert (sent.kind, sent.never_connected) == (kind, unsent)
