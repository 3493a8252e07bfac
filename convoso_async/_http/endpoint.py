"""What a resource declares about one endpoint, and what one call of it comes back as.

An `Endpoint` is frozen data a resource declares once: the path; whether
sending it twice does no more than once (which decides what the retry policy
may send again); how its answer decodes into what the resource returns; which
Convoso ``code``s mean which error there; and which form field names what one
call is about (the pipeline puts its value on log lines, spans and errors, so
it needs no parameter of its own for it).

A call goes through the client's one port and comes back as a `Reply`: the
decoded answer or the error, with the HTTP attempts it took, so that a bulk
call can tell a row never sent from one sent and failed without handing a
mutable counter down the layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar, cast

import attrs

from convoso_async._errors import APIError

__all__ = ["Endpoint", "Reply", "as_is"]

T = TypeVar("T")


def as_is(payload: dict[str, Any]) -> dict[str, Any]:
    """The decoding of an endpoint whose answer is returned as Convoso sent it."""
    return payload


def _frozen_codes(codes: Mapping[int, type[APIError]]) -> Mapping[int, type[APIError]]:
    return MappingProxyType(dict(codes))


@attrs.frozen
class Endpoint(Generic[T]):
    """One Convoso endpoint, as a resource declares it.

    Attributes:
        path: below the base URL, such as ``/campaigns/status``.
        idempotent: whether sending it twice does no more than once; if not,
            a call is retried only when it cannot have been processed.
        decode: the answer's JSON object (already checked as Convoso's
            envelope) into what the call returns; raises `ResponseDecodeError`
            (or another `ConvosoError`) for an answer of the wrong shape.
        codes: Convoso ``code``s that mean a particular error on this endpoint,
            on top of the ones every endpoint shares.
        subject: the form field that names what one call is about (``campaign_id``):
            its value goes on the call's log lines, spans and errors.
    """

    path: str
    idempotent: bool
    decode: Callable[[dict[str, Any]], T]
    codes: Mapping[int, type[APIError]] = attrs.field(factory=dict, converter=_frozen_codes)
    subject: str | None = None

    def subject_of(self, fields: Mapping[str, str]) -> str | None:
        """What the call with ``fields`` is about, if this endpoint names a subject."""
        return None if self.subject is None else fields.get(self.subject)

    def read_error(self, error: Exception) -> Exception:
        """``error`` as this endpoint reads it: an `APIError` whose ``code`` this endpoint
        gives a meaning becomes that error (the code outranks a guess from the wording)."""
        if not isinstance(error, APIError) or not isinstance(error.code, int):
            return error
        error_cls = self.codes.get(error.code)
        if error_cls is None or type(error) is error_cls:
            return error
        return error_cls(
            error.message,
            code=error.code,
            status_code=error.status_code,
            campaign_id=error.campaign_id,
        )


@attrs.frozen
class Reply(Generic[T]):
    """What one call came to: the decoded answer or the error, and the HTTP attempts it took.

    ``attempts`` is 0 when nothing was sent (an open circuit breaker refused it).
    """

    value: T | None = None
    error: Exception | None = None
    attempts: int = 0

    def unwrap(self) -> T:
        """The decoded answer; the error, raised, if the call failed."""
        if self.error is not None:
            raise self.error
        return cast(T, self.value)
