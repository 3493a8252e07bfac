"""What a sender gives the pipeline: an `HttpAnswer`, or a `SendError`; and the size cap.

Every way of sending (a stock httpx2 client, a caller's httpx or httpx2
client, the aiohttp opt-in) returns the same `HttpAnswer` (status, headers, the
body read and decoded) and fails with the same `SendError`, so the pipeline
above knows no HTTP library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

__all__ = ["HttpAnswer", "SendError", "too_large"]

RawHeaders = Sequence[tuple[bytes, bytes]]


class SendError(Exception):
    """Sending failed before a whole answer came back.

    ``kind`` is ``"timeout"`` (no complete answer in time), ``"decode"`` (the
    bytes came but do not decompress: asking again gets the same), ``"too
    large"`` (the answer passed ``max_response_bytes``: see `too_large`) or
    ``"connection"`` (anything else on the way: refused, reset, TLS, a broken
    answer). The message says what happened and never holds a request body.

    ``never_connected`` is True only when the sender knows no connection was
    made (which errors say so: `transport_errors`): the request never left, so
    the server cannot have processed it and any request, idempotent or not,
    may be sent again. False means it may have reached the server. A whole
    attempt's time limit passing says nothing about where it was (connecting,
    or waiting for the answer), so it is False.
    """

    def __init__(
        self,
        kind: Literal["timeout", "decode", "too large", "connection"],
        detail: str,
        *,
        never_connected: bool = False,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.never_connected = never_connected


class HttpAnswer:
    """An HTTP answer with its body read and decoded: what the pipeline needs of a response.

    ``headers`` is a case-insensitive mapping (an ``httpx2.Headers`` or the
    caller's family's): repeated headers read as one comma-joined value.
    """

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, content: bytes, headers: Mapping[str, str]) -> None:
        self.status_code = status_code
        self.content = content
        self.headers = headers

    def __repr__(self) -> str:
        return f"HttpAnswer(status_code={self.status_code}, {len(self.content)} bytes)"


def too_large(limit: int) -> SendError:
    """The error for an answer past ``max_response_bytes`` (the body was not kept).

    The pipeline raises it as a `ResponseDecodeError` naming the endpoint's path.
    """
    return SendError(
        "too large",
        f"the answer is larger than max_response_bytes ({limit:,} bytes); it was not read "
        "further and its connection was closed. Raise max_response_bytes if answers this "
        "large are expected",
    )
