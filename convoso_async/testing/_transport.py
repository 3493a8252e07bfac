"""The fake as an httpx2 transport: requests are answered in-process, with no socket.

It only translates: a request goes into the shared handler core, and the
`Answer` comes back as a response, or as the error the client raises when a
server closes the connection without answering. An HTTP client enforces its
timeouts in the network layer this replaces, so the read timeout is applied
here, and a ``slow`` fault times out as it would over a socket. Waiting uses
anyio, so the transport works under asyncio and trio.

`answer_in_process` is that translation's first half for either client
family: httpx2's `FakeTransport` here, and httpx's in ``._httpx_transport``,
imported only when asked for, since httpx is not a dependency.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
import httpx2

if TYPE_CHECKING:
    from ._state import Answer, FakeState

__all__ = ["DISCONNECTED", "TIMED_OUT", "FakeTransport", "answer_in_process", "response_headers"]

#: The message of the error a client raises when a server hangs up without answering.
DISCONNECTED: Final = "Server disconnected without sending a response."
TIMED_OUT: Final = "timed out waiting for the answer"


class _URL(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> bytes: ...


class _Request(Protocol):
    """What `answer_in_process` reads of a request; httpx's and httpx2's both have it."""

    @property
    def method(self) -> str: ...
    @property
    def url(self) -> _URL: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def extensions(self) -> Mapping[str, Any]: ...
    async def aread(self) -> bytes: ...


async def answer_in_process(fake: FakeState, request: _Request) -> Answer | None:
    """The fake's answer to ``request``, or `None` if it outlasts the request's read timeout."""
    body = await request.aread()
    timeouts = request.extensions.get("timeout", {})
    with anyio.move_on_after(timeouts.get("read")):
        return await fake._respond(
            request.method,
            request.url.path,
            request.headers.get("content-type", ""),
            body,
            request.url.query.decode("ascii"),
        )
    return None


def response_headers(answer: Answer) -> list[tuple[str, str]]:
    return [("Content-Type", answer.content_type), *answer.headers]


class FakeTransport(httpx2.AsyncBaseTransport):
    """Answers every request of an `httpx2.AsyncClient` from a `FakeState`'s handler core."""

    def __init__(self, fake: FakeState) -> None:
        self._fake = fake

    def __repr__(self) -> str:
        return f"<FakeTransport for {self._fake!r}>"

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        answer = await answer_in_process(self._fake, request)
        if answer is None:
            raise httpx2.ReadTimeout(TIMED_OUT, request=request)
        if answer.drop:
            raise httpx2.RemoteProtocolError(DISCONNECTED, request=request)
        return httpx2.Response(
            answer.status, headers=response_headers(answer), content=answer.body, request=request
        )
