"""The fake as an httpx transport: requests are answered in-process, with no socket.

It only translates: an `httpx.Request` goes into the shared handler core, and
the `Answer` comes back as an `httpx.Response`, or as the error httpx raises
when a server closes the connection without answering. httpx enforces its
timeouts in the network layer this replaces, so the read timeout is applied
here, and a ``slow`` fault times out as it would over a socket. Waiting uses
anyio, so the transport works under asyncio and trio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import httpx

if TYPE_CHECKING:
    from ._state import FakeState

__all__ = ["FakeTransport"]


class FakeTransport(httpx.AsyncBaseTransport):
    """Answers every request from a `FakeState`'s handler core (a `FakeConvoso`'s, say)."""

    def __init__(self, fake: FakeState) -> None:
        self._fake = fake

    def __repr__(self) -> str:
        return f"<FakeTransport for {self._fake!r}>"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        timeouts = request.extensions.get("timeout", {})
        try:
            with anyio.fail_after(timeouts.get("read")):
                answer = await self._fake._respond(
                    request.method,
                    request.url.path,
                    request.headers.get("content-type", ""),
                    body,
                    request.url.query.decode("ascii"),
                )
        except TimeoutError:
            raise httpx.ReadTimeout("timed out waiting for the answer", request=request) from None
        if answer.drop:
            # The same error httpx raises when a real server hangs up mid-exchange.
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return httpx.Response(
            answer.status,
            headers=[("Content-Type", answer.content_type), *answer.headers],
            content=answer.body,
            request=request,
        )
