"""The request pipeline every endpoint goes through, written once.

One call of `Pipeline.post` is: for each attempt, wait for its turn (the
`Pacer`: any client-wide pause, then a slot from the rate limiter), send a
form-encoded POST with ``auth_token`` in the body through the client's
`Pool`, decode Convoso's envelope (`decode_answer`), and map a failure onto
the error tree (`transport_errors`); the retry policy decides whether to go
again. Resources above it only declare an `Endpoint` and give its fields; a
call comes back as a `Reply`.
"""

from __future__ import annotations

import copy
import time
from typing import Any, TypeVar
from urllib.parse import urlencode

from convoso_async import _telemetry as telemetry
from convoso_async._errors import APIStatusError
from convoso_async._options import Options
from convoso_async._pacing.ratelimit import PauseGate
from convoso_async._pacing.retry import RetryPolicy
from convoso_async._redaction import redact, redact_url, telemetry_url

from .answer import SendError
from .attempt_log import log_attempt, retry_log
from .decoding import decode_answer
from .endpoint import Endpoint, Reply
from .pacer import Pacer
from .pool import Pool
from .transport_errors import convoso_error

__all__ = ["Pipeline"]

T = TypeVar("T")


class Pipeline:
    """Sends one logical request with pacing, retries and error mapping.

    Several clients made by ``with_options`` share one pipeline's token and
    pause gate (and, through their `Options`, whatever limiter, budget and
    breaker they were not given), each with its own timeout and retry policy.
    """

    def __init__(
        self, *, base_url: str, auth_token: str, pause: PauseGate, options: Options
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = auth_token
        self.pause = pause
        self._read(options)

    def _read(self, options: Options) -> None:
        """Pace on the options' limiter and consult their budget and breaker."""
        self.options = options
        self.limiter = options.rate_limiter
        self.guard = options.guard  # the client-wide retry budget and circuit breaker
        self._pacer = Pacer(self.pause, self.limiter)

    def __repr__(self) -> str:
        return f"Pipeline(base_url={redact_url(self.base_url)!r}, limiter={self.limiter!r})"

    def with_options(self, options: Options) -> Pipeline:
        """The same pipeline (token, pause gate) reading another copy's options."""
        twin = copy.copy(self)
        twin._read(options)
        return twin

    async def post(
        self,
        pool: Pool,
        endpoint: Endpoint[T],
        fields: dict[str, str],
        *,
        time_limit: float,
        max_bytes: int,
        policy: RetryPolicy,
    ) -> Reply[T]:
        """POST ``fields`` (plus the token) to ``endpoint``: its decoded answer, or the error,
        with the attempts it took.

        Each attempt has ``time_limit`` seconds and reads at most ``max_bytes``.
        A failure comes back as the reply's ``error``, never raised (a
        cancellation goes on), so the attempts travel with it.
        """
        path = endpoint.path
        subject = endpoint.subject_of(fields)
        body = urlencode({"auth_token": self._token, **fields}).encode()
        url = self.base_url + path
        under_way = [0]  # the number of the attempt under way, for the reply

        async def attempt(number: int) -> dict[str, Any]:
            under_way[0] = number
            return await self._attempt(
                pool, url, path, body, (time_limit, max_bytes), subject, number
            )

        on_retry = retry_log(path, subject, policy.max_retries)
        try:
            payload = await policy.call(attempt, on_retry=on_retry, guard=self.guard)
            return Reply(endpoint.decode(payload), attempts=under_way[0])
        except Exception as error:
            return Reply(error=endpoint.read_error(error), attempts=under_way[0])

    async def _attempt(
        self,
        pool: Pool,
        url: str,
        path: str,
        body: bytes,
        limits: tuple[float, int],
        campaign_id: str | None,
        number: int,
    ) -> dict[str, Any]:
        # Make this event loop's senders (the aiohttp opt-in's session and
        # request head) before taking a slot, so the first request is not
        # late against its grant.
        pool.prepare()
        observed = telemetry.active()
        if observed is None:
            await self._pacer.wait_turn()
            return await self._exchange(pool, url, path, body, limits, campaign_id, number, None)
        waiting = time.perf_counter()
        await self._pacer.wait_turn()
        observed.waited(time.perf_counter() - waiting, number)
        with observed.attempt(telemetry_url(url), number, campaign_id) as note:
            return await self._exchange(pool, url, path, body, limits, campaign_id, number, note)

    async def _exchange(
        self,
        pool: Pool,
        url: str,
        path: str,
        body: bytes,
        limits: tuple[float, int],
        campaign_id: str | None,
        number: int,
        note: telemetry.Attempt | None,
    ) -> dict[str, Any]:
        """Send the request, decode the answer, map a failure (``note`` hears the status)."""
        started = time.perf_counter()
        try:
            response = await pool.post(url, body, *limits)
        except SendError as exc:
            detail = redact(exc.detail, self._token, self.base_url)
            error = convoso_error(exc, detail, path=path, campaign_id=campaign_id)
            log_attempt(path, campaign_id, number, started, error=error)
            raise error from None
        status = response.status_code
        if note is not None:
            note.answered(status)
        log_attempt(path, campaign_id, number, started, status=status)
        self._pacer.answered(status)
        try:
            return decode_answer(
                status,
                response.headers,
                response.content,
                path=path,
                campaign_id=campaign_id,
                secret=self._token,
                base_url=self.base_url,
            )
        except APIStatusError as error:
            await self._pacer.refused(error, note)
            raise
