"""The Campaigns API: ``/campaigns/search`` and ``/campaigns/status``.

This module declares the endpoints (`Endpoint`: path, idempotence, decoding,
the codes that mean something there), checks the caller's input before
anything is sent, and says which model an answer becomes. Retries, pacing, auth and error
mapping happen below it (`convoso_async._http.pipeline`); bulk accounting beside it
(`convoso_async._bulk.changes`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from convoso_async import _telemetry as telemetry
from convoso_async._bulk import changes
from convoso_async._bulk.changes import BatchProgress, BatchResult, StatusOutcome
from convoso_async._bulk.ledger import Sent
from convoso_async._checks import check_callback, check_concurrency, check_flag, check_number
from convoso_async._errors import (
    CampaignNotFoundError,
    InvalidStatusError,
    ResponseDecodeError,
    UnexpectedResponseError,
)
from convoso_async._http.endpoint import Endpoint, Reply
from convoso_async._models import Campaign, structure

__all__ = ["Campaigns", "FormSender", "check_active", "check_campaign_id"]

T = TypeVar("T")

SEARCH_PATH = "/campaigns/search"
STATUS_PATH = "/campaigns/status"


def _campaigns(payload: dict[str, Any]) -> list[Campaign]:
    """``/campaigns/search``'s answer: every campaign under ``data``."""
    data = payload.get("data")
    if not isinstance(data, list):
        found = "nothing" if data is None else type(data).__name__
        raise ResponseDecodeError(
            f"Convoso's answer is not of the documented shape: expected a list, got {found}",
            path="data",
        )
    return structure(data, list[Campaign], path="data")


def _confirmed(payload: dict[str, Any]) -> None:
    """``/campaigns/status``'s answer: it always says; without a word, the change is unknown."""
    if payload.get("success") is not True:
        raise UnexpectedResponseError(
            STATUS_PATH, payload.get("success"), missing="success" not in payload
        )


#: Every campaign of the account; asking again is harmless.
SEARCH: Endpoint[list[Campaign]] = Endpoint(SEARCH_PATH, idempotent=True, decode=_campaigns)
#: One campaign's status: an absolute state, so a repeat is harmless.
STATUS: Endpoint[None] = Endpoint(
    STATUS_PATH,
    idempotent=True,
    decode=_confirmed,
    codes={6026: CampaignNotFoundError, 6080: InvalidStatusError},
    subject="campaign_id",
)


def check_campaign_id(campaign_id: object) -> str:
    """A campaign id as Convoso wants it: a non-empty string (an int becomes its digits)."""
    if isinstance(campaign_id, bool) or not isinstance(campaign_id, (str, int)):
        raise TypeError(f"campaign_id must be a string or an int, not {type(campaign_id).__name__}")
    # Ids read from files and forms often carry stray spaces; Convoso's never do.
    text = str(campaign_id).strip()
    if not text:
        raise ValueError("campaign_id must not be empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: it cannot go into a form body
        raise ValueError(f"campaign_id {text!r} is not valid text") from None
    return text


def check_active(active: object) -> bool:
    """``active`` must be a real bool: ``"false"``, ``0`` or ``None`` are refused."""
    if not isinstance(active, bool):
        raise TypeError(
            f"active must be True or False, not {active!r} ({type(active).__name__}); "
            "strings and numbers are refused so that 'false' can never activate a campaign"
        )
    return active


class FormSender(Protocol):
    """All a resource needs of its client: one port for a call of an endpoint, and the bulk default.

    `AsyncConvoso` is one; the resource never sees the client's other parts, so it
    cannot reach round the pipeline that retries, paces, authenticates and maps errors.
    """

    @property
    def max_concurrency(self) -> int:
        """Status requests in flight when a bulk call names no ``max_concurrency``."""
        ...

    async def _call(self, endpoint: Endpoint[T], fields: dict[str, str]) -> Reply[T]:
        """One call of ``endpoint`` with ``fields`` through the pipeline; its reply."""
        ...


class Campaigns:
    """``convoso.campaigns``: list campaigns and change their status, one or many."""

    def __init__(self, client: FormSender) -> None:
        self._client = client

    async def search(self) -> list[Campaign]:
        """Every campaign of the account, active or not.

        The active ones, for example:

            active = [c for c in await convoso.campaigns.search() if c.is_active]
        """
        with telemetry.api_call("campaigns.search"):
            return (await self._client._call(SEARCH, {})).unwrap()

    async def set_status(self, campaign_id: str | int, active: bool) -> None:
        """Activate (``True``) or deactivate (``False``) one campaign.

        Raises `CampaignNotFoundError` for an unknown id, and the other
        `ConvosoError` subclasses for the rest; ``TypeError``/``ValueError``
        for bad input, before anything is sent.
        """
        (await self._send(check_campaign_id(campaign_id), check_active(active))).unwrap()

    async def activate(self, campaign_id: str | int) -> None:
        """Activate one campaign (``status=true``)."""
        await self.set_status(campaign_id, True)

    async def deactivate(self, campaign_id: str | int) -> None:
        """Deactivate one campaign (``status=false``)."""
        await self.set_status(campaign_id, False)

    async def set_status_many(
        self,
        campaign_ids: Iterable[str | int],
        active: bool,
        *,
        max_concurrency: int | None = None,
        on_progress: Callable[[BatchProgress], None] | None = None,
        skip_unchanged: bool = False,
        dry_run: bool = False,
        deadline: float | None = None,
        on_interrupt: Callable[[BatchResult], None] | None = None,
    ) -> BatchResult:
        """Set many campaigns to one state, concurrently; a result for every id.

        Duplicate ids are sent once. ``skip_unchanged`` searches first and
        skips ids already in the wanted state (unknown ids fail locally with
        `CampaignNotFoundError`). ``dry_run`` searches, sends nothing, and
        reports the plan. ``on_progress`` receives a `BatchProgress` as work
        completes. Errors of single campaigns land in ``result.failed``; call
        ``result.raise_for_failures()`` to turn them into one `BatchError`.

        Work that stops early is accounted for: a rejected token or missing
        permission stops the batch (nothing more is sent; the rest land in
        ``result.not_sent`` with that error), as does the client's circuit
        breaker (`CircuitOpenError`). ``deadline`` (seconds for the whole
        batch) returns a partial result when it passes: ids in flight in
        ``result.unknown``, the rest in ``result.not_sent``. If the calling
        task is cancelled (``anyio.move_on_after``, ``asyncio.wait_for``,
        Ctrl-C), the cancellation goes on, every id sent has its audit line
        (``outcome=unknown`` for those in flight), and ``on_interrupt``, if
        given, receives the partial `BatchResult` first.

            result = await convoso.campaigns.set_status_many(["111", "222"], False)
            print(result.succeeded, dict(result.failed))
        """
        wanted = check_active(active)
        ids = _check_ids(campaign_ids)
        return await self._apply(
            "campaigns.set_status_many",
            dict.fromkeys(ids, wanted),
            max_concurrency=max_concurrency,
            on_progress=on_progress,
            skip_unchanged=skip_unchanged,
            dry_run=dry_run,
            deadline=deadline,
            on_interrupt=on_interrupt,
        )

    async def apply_statuses(
        self,
        targets: Mapping[str, bool] | Mapping[int, bool] | Mapping[str | int, bool],
        *,
        max_concurrency: int | None = None,
        on_progress: Callable[[BatchProgress], None] | None = None,
        skip_unchanged: bool = False,
        dry_run: bool = False,
        deadline: float | None = None,
        on_interrupt: Callable[[BatchResult], None] | None = None,
    ) -> BatchResult:
        """Bring each campaign to its own wanted state: ``{"111": True, "222": False}``.

        Same options and guarantees as `set_status_many`. Every id and state
        is checked before anything is sent.
        """
        if not isinstance(targets, Mapping):
            raise TypeError(
                f"targets must be a mapping of id -> bool, not {type(targets).__name__}"
            )
        checked: dict[str, bool] = {}
        for campaign_id, active in targets.items():
            key = check_campaign_id(campaign_id)
            wanted = check_active(active)
            if checked.setdefault(key, wanted) != wanted:
                raise ValueError(f"campaign {key!r} is given both states")
        return await self._apply(
            "campaigns.apply_statuses",
            checked,
            max_concurrency=max_concurrency,
            on_progress=on_progress,
            skip_unchanged=skip_unchanged,
            dry_run=dry_run,
            deadline=deadline,
            on_interrupt=on_interrupt,
        )

    async def _apply(
        self,
        operation: str,
        checked: dict[str, bool],
        *,
        max_concurrency: int | None,
        on_progress: Callable[[BatchProgress], None] | None,
        skip_unchanged: bool,
        dry_run: bool,
        deadline: float | None,
        on_interrupt: Callable[[BatchResult], None] | None,
    ) -> BatchResult:
        """A bulk change of checked targets; ``operation`` names the public call (its span)."""
        limit = self._concurrency(max_concurrency)
        _check_deadline(deadline)
        check_flag("skip_unchanged", skip_unchanged)
        check_flag("dry_run", dry_run)
        check_callback("on_progress", on_progress)
        check_callback("on_interrupt", on_interrupt)
        return await changes.apply(
            checked,
            operation=operation,
            send=self._change,
            search=self.search,
            max_concurrency=limit,
            on_progress=on_progress,
            skip_unchanged=skip_unchanged,
            dry_run=dry_run,
            deadline=deadline,
            on_interrupt=on_interrupt,
        )

    async def iter_set_status(
        self,
        campaign_ids: Iterable[str | int],
        active: bool,
        *,
        max_concurrency: int | None = None,
    ) -> AsyncGenerator[StatusOutcome, None]:
        """Set many campaigns to one state, yielding a `StatusOutcome` as each completes.

            async for outcome in convoso.campaigns.iter_set_status(ids, True):
                print(outcome.campaign_id, "ok" if outcome.ok else outcome.error)

        Outcomes come at the consumer's pace: at most about ``max_concurrency``
        wait to be taken, and a slow consumer slows the sending. Cancelling
        the iterating task stops new requests at once. To stop early with
        ``break``, iterate inside ``contextlib.aclosing(...)`` so the
        in-flight requests are cancelled there and then (their audit line
        says ``outcome=unknown``). After a rejected token or missing
        permission nothing more is sent: the remaining outcomes carry that
        error with ``sent`` False.
        """
        wanted = check_active(active)
        ids = _check_ids(campaign_ids)
        limit = self._concurrency(max_concurrency)
        async with contextlib.aclosing(
            changes.stream(
                dict.fromkeys(ids, wanted),
                operation="campaigns.iter_set_status",
                send=self._change,
                max_concurrency=limit,
            )
        ) as outcomes:
            async for outcome in outcomes:
                yield outcome

    def _concurrency(self, max_concurrency: int | None) -> int:
        """A bulk call's ``max_concurrency``, checked; the client's when it names none."""
        return check_concurrency(
            self._client.max_concurrency if max_concurrency is None else max_concurrency
        )

    async def _change(self, campaign_id: str, active: bool) -> Sent:
        """One change of a bulk call: what came back, and the attempts it took."""
        reply = await self._send(campaign_id, active)
        return Sent(error=reply.error, attempts=reply.attempts)

    async def _send(self, campaign_id: str, active: bool) -> Reply[None]:
        """One status change under its span; a failure is the reply's (and the span's) error."""
        form = {"campaign_id": campaign_id, "status": "true" if active else "false"}
        reply: Reply[None] | None = None
        # Raised inside the span so that it records the failure, then kept in the reply.
        with (
            contextlib.suppress(Exception),
            telemetry.api_call("campaigns.status", campaign_id, active),
        ):
            reply = await self._client._call(STATUS, form)
            reply.unwrap()
        assert reply is not None  # the port never raises: a failure is the reply's error
        return reply


def _check_deadline(deadline: object) -> None:
    if deadline is not None:
        check_number("deadline", deadline)


def _check_ids(campaign_ids: Iterable[str | int]) -> list[str]:
    if isinstance(campaign_ids, (str, bytes, bytearray, memoryview)):
        raise TypeError("campaign_ids must be a collection of ids, not a single string")
    try:
        items = list(campaign_ids)
    except TypeError:
        raise TypeError(
            f"campaign_ids must be an iterable of ids, not {type(campaign_ids).__name__}"
        ) from None
    return [check_campaign_id(item) for item in items]
