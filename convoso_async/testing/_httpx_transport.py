"""The fake as a transport for callers whose client is still an `httpx.AsyncClient`.

Only imported when asked for (`FakeConvoso.transport` with ``family="httpx"``):
httpx is not a dependency. It differs from ``._transport``'s only in the
family whose requests, responses and errors it speaks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from ._transport import DISCONNECTED, TIMED_OUT, answer_in_process, response_headers

if TYPE_CHECKING:
    from ._state import FakeState

__all__ = ["FakeHttpxTransport"]


class FakeHttpxTransport(httpx.AsyncBaseTransport):
    """Answers every request of an `httpx.AsyncClient` from a `FakeState`'s handler core."""

    def __init__(self, fake: FakeState) -> None:
        self._fake = fake

    def __repr__(self) -> str:
        return f"<FakeHttpxTransport for {self._fake!r}>"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        answer = await answer_in_process(self._fake, request)
        if answer is None:
            raise httpx.ReadTimeout(TIMED_OUT, request=request)
        if answer.drop:
            raise httpx.RemoteProtocolError(DISCONNECTED, request=request)
        return httpx.Response(
            answer.status, headers=response_headers(answer), content=answer.body, request=request
        )
