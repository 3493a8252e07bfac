"""The fake's state and its one handler core.

Both front ends, the in-process transport (`._transport`, and
`._httpx_transport` for httpx) and the HTTP/1.1 server on loopback
(`._server`), reduce a request to ``(method, path, content_type, body,
query)`` and await `FakeState._respond`, which returns an
`Answer`: what to send (status, headers, body) or to drop the connection, and
after how long. Everything Convoso-like (routing, auth, validation, state,
server-side rate limit, scripted faults, the request log) lives here, so the
two front ends cannot drift apart.

Every state change happens in `FakeState._decide`, synchronously, under one
`threading.RLock` held only for that call: the loopback server runs on its own
thread and loop, while tests inspect the state from theirs. (Reentrant, so an
endpoint handler of `FakeState.add_endpoint` may read the fake's state.)
"""

from __future__ import annotations

import datetime as dt
import http
import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Final, Literal, get_args
from urllib.parse import parse_qsl

import anyio
import attrs

__all__ = [
    "REFERENCE_CAMPAIGNS",
    "Answer",
    "EndpointHandler",
    "FakeState",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "generated_campaigns",
    "most_in_window",
    "reference_campaigns",
]

FaultKind = Literal["status", "rate_limit", "slow", "drop", "bad_json", "bad_shape"]
FAULT_KINDS: Final[frozenset[str]] = frozenset(get_args(FaultKind))

SEARCH_PATH: Final = "/campaigns/search"
STATUS_PATH: Final = "/campaigns/status"
#: Convoso's public base URL ends in ``/v1``; a path outside it is not found, as there.
API_PREFIX: Final = "/v1"
DEFAULT_TOKEN: Final = "test-token"
#: How many campaigns a fake generates when told nothing.
DEFAULT_CAMPAIGNS: Final = 3
#: What a record shows in place of the token.
MASK: Final = "***"

JSON_TYPE: Final = "application/json"
HTML_TYPE: Final = "text/html; charset=utf-8"
FORM_TYPE: Final = "application/x-www-form-urlencoded"


def _json(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _error_body(message: str, code: int | None = None) -> bytes:
    payload: dict[str, object] = {"success": False, "error": message}
    if code is not None:
        payload["code"] = code
    return _json(payload)


def _strip_prefix(path: str) -> str:
    if path.startswith(API_PREFIX + "/"):
        return path[len(API_PREFIX) :]
    return path


def _api_path(raw_path: str) -> tuple[str, bool]:
    """The path below ``/v1`` and True; or, for a path outside the API, itself and False."""
    if raw_path.startswith(API_PREFIX + "/"):
        return raw_path[len(API_PREFIX) :], True
    return raw_path, False


def _parse_fields(text: str) -> dict[str, str]:
    # PHP (and so Convoso) keeps the last value of a repeated field.
    return dict(parse_qsl(text, keep_blank_values=True))


def _parse_status(value: str | None) -> bool | None:
    """``true``/``false`` in any case, or ``1``/``0``; `None` for anything else.

    `requests` form-encodes Python's `True` as ``True``, which is what the
    reference's own example loop sends, so case is ignored.
    """
    if value is None:
        return None
    folded = value.lower()
    if folded in ("true", "1"):
        return True
    if folded in ("false", "0"):
        return False
    return None


def _retry_after_header(seconds: float) -> tuple[str, str]:
    return ("Retry-After", str(max(1, math.ceil(seconds))))


@attrs.frozen
class Answer:
    """What a front end must do with one request: send this, or drop the connection.

    ``delay`` is how long to wait first (latency plus a ``slow`` fault's delay).
    """

    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    drop: bool = False


_OK = Answer(200, _json({"success": True}))
_INVALID_TOKEN = Answer(200, _error_body("Invalid authentication token"))
_NO_PERMISSION = Answer(200, _error_body("Insufficient permissions"))
_NOT_FOUND_CAMPAIGN = Answer(200, _error_body("Campaign not found", 6026))
_BAD_STATUS = Answer(200, _error_body("Status must be true or false", 6080))
_NO_ROUTE = Answer(404, _error_body("Not found"))

#: What an endpoint registered with `FakeState.add_endpoint` does: given the request's
#: form fields (the token left out), the JSON object to answer with HTTP 200.
EndpointHandler = Callable[[dict[str, str]], Mapping[str, Any]]


def _echo(path: str) -> EndpointHandler:
    """The built-in handler: ``{"success": true, "path": ..., "fields": {...}}``."""

    def echo(fields: dict[str, str]) -> Mapping[str, Any]:
        return {"success": True, "path": path, "fields": fields}

    return echo


def _handled(path: str, handler: EndpointHandler, fields: dict[str, str]) -> Answer:
    try:
        return Answer(200, _json(dict(handler(fields))))
    except Exception as exc:  # a test's handler failed: say so, as a server would
        page = f"<html><body>{type(exc).__name__} in the handler of {path}</body></html>"
        return Answer(500, page.encode(), HTML_TYPE)


_NOT_ALLOWED = Answer(405, _error_body("Method not allowed"), headers=(("Allow", "POST"),))
_TOO_MANY_BODY = _error_body("Too many requests")
_DROP = Answer(0, drop=True)
_BAD_JSON = Answer(200, b"<html>oops</html>", HTML_TYPE)
_BAD_SHAPES: Final[Mapping[str, Answer]] = {
    SEARCH_PATH: Answer(200, _json({"data": {"unexpected": 1}})),
    STATUS_PATH: Answer(200, _json({"status": "ok"})),
}
_BAD_SHAPE_OTHER = Answer(200, _json({"unexpected": True}))


def _request_numbers(value: Iterable[int] | None) -> frozenset[int] | None:
    if value is None:
        return None
    numbers = frozenset(value)
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in numbers):
        raise ValueError(f"on_requests must hold 1-based request numbers, not {sorted(numbers)!r}")
    return numbers


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _optional_path(value: str | None) -> str | None:
    return None if value is None else _strip_prefix("/" + value.lstrip("/"))


def _check_probability(_: object, __: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"probability must be between 0 and 1, not {value!r}")


def _check_times(_: object, __: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"times must be at least 1 (or None for unlimited), not {value!r}")


def _check_seconds(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number of seconds >= 0, not {value!r}")


def _check_http_status(_: object, __: attrs.Attribute[int], value: int) -> None:
    if not 100 <= value <= 599:
        raise ValueError(f"status must be an HTTP status code (100-599), not {value!r}")


@attrs.define(eq=False)
class Fault:
    """A scripted failure: which requests it hits, and what they get instead of an answer.

    Kinds:

    - ``"status"``: HTTP ``status`` with an HTML body, as a load balancer would
      send (a 429 also carries ``Retry-After``);
    - ``"rate_limit"``: HTTP 429 with ``Retry-After``;
    - ``"slow"``: wait ``delay`` seconds, then answer normally (for timeouts);
    - ``"drop"``: close the connection without answering;
    - ``"bad_json"``: HTTP 200 with an HTML body;
    - ``"bad_shape"``: HTTP 200 with JSON of the wrong shape.

    Selectors combine with AND; one left as `None` matches every request.
    ``on_requests`` holds 1-based request numbers counted over all requests
    the fake has seen (since the last `FakeConvoso.reset_requests`);
    ``probability`` draws from the fake's seeded RNG. After ``times`` hits the
    fault is spent. ``delay`` applies to every kind (a ``drop`` after two
    seconds, say). ``retry_after`` overrides the fake's for this fault's 429s,
    and sends ``Retry-After`` with a ``status`` fault of any status (a 503, say).
    A faulted request never changes state, except ``"slow"``, which answers
    normally. ``hits`` counts the requests the fault took::

        fake.add_fault(Fault("drop", on_requests={2}))
        fake.add_fault(Fault("status", status=502, path="/campaigns/status", times=3))
    """

    kind: FaultKind = attrs.field(validator=attrs.validators.in_(FAULT_KINDS))
    status: int = attrs.field(default=503, kw_only=True, validator=_check_http_status)
    on_requests: frozenset[int] | None = attrs.field(
        default=None, kw_only=True, converter=_request_numbers
    )
    campaign_id: str | None = attrs.field(default=None, kw_only=True, converter=_optional_str)
    path: str | None = attrs.field(default=None, kw_only=True, converter=_optional_path)
    probability: float | None = attrs.field(
        default=None, kw_only=True, validator=_check_probability
    )
    times: int | None = attrs.field(default=None, kw_only=True, validator=_check_times)
    delay: float = attrs.field(default=0.0, kw_only=True, validator=_check_seconds)
    retry_after: float | None = attrs.field(default=None, kw_only=True, validator=_check_seconds)
    hits: int = attrs.field(default=0, init=False)

    @property
    def spent(self) -> bool:
        """Whether the fault has taken its ``times`` hits."""
        return self.times is not None and self.hits >= self.times


@attrs.frozen
class RecordedRequest:
    """One request as the fake saw it. The token is never kept, only whether it was valid.

    ``form`` holds the request's fields (query fields, overridden by body
    fields, as PHP merges them) with ``auth_token`` shown as ``"***"``.
    ``token_in_query`` flags a token sent in the URL, where proxies log it.
    ``in_flight`` counts the requests being handled at arrival, this one
    included. ``status`` is the HTTP status the fake decided to answer (0 for
    a dropped connection); ``fault`` is the kind of the fault that took it.
    """

    seq: int
    time: float
    path: str
    form: dict[str, str]
    token_ok: bool
    token_in_query: bool
    in_flight: int
    status: int
    fault: FaultKind | None
    campaign_id: str | None

    @property
    def accepted(self) -> bool:
        """Whether the API itself handled it: neither rate-limited nor taken by a fault."""
        return self.status != 429 and self.fault in (None, "slow")


_TOPICS: Final = (
    "Sales",
    "Retention",
    "Customer Service",
    "Renewals",
    "Win-Back",
    "Upsell",
    "Surveys",
    "Collections",
    "Appointments",
    "Renovación",
    "Inbound Support",
)
_REGIONS: Final = ("East", "West", "Central", "North", "South", "Mountain", "Pacific")
_LAST_DAY: Final = dt.date(2026, 3, 3)


#: The three campaigns of the Campaigns API reference's search example, as it shows them.
REFERENCE_CAMPAIGNS: Final[tuple[Mapping[str, Any], ...]] = (
    {
        "id": "111",
        "name": "Sales Campaign",
        "status": "Y",
        "last_call_date": {"date": "2026-03-03", "timezone_type": 3, "timezone": "America/Denver"},
    },
    {
        "id": "222",
        "name": "Customer Service",
        "status": "N",
        "last_call_date": {"date": "2026-03-02", "timezone_type": 3, "timezone": "America/Denver"},
    },
    {
        "id": "333",
        "name": "Retention Campaign",
        "status": "Y",
        "last_call_date": {"date": "2026-03-03", "timezone_type": 3, "timezone": "America/Denver"},
    },
)


def reference_campaigns() -> list[dict[str, Any]]:
    """A fresh copy of the API reference's example campaigns: ids 111 (active), 222, 333 (active).

    ``FakeConvoso(campaigns=reference_campaigns())`` answers a search exactly
    as the reference's response example does.
    """
    return [{**c, "last_call_date": dict(c["last_call_date"])} for c in REFERENCE_CAMPAIGNS]


def generated_campaigns(
    count: int, *, ids: Iterable[str | int] | None = None
) -> list[dict[str, Any]]:
    """``count`` deterministic campaigns with ids ``"1001"``, ``"1002"``, ...

    With ``ids``, one campaign per id given instead (``count`` is then unused).

    Names vary (one has a non-ASCII letter), about a third are inactive,
    every seventh has a null ``last_call_date`` and every fifth date carries
    a time in the ``YYYY-MM-DD HH:MM:SS.ffffff`` form PHP emits.
    """
    chosen = None if ids is None else [str(i) for i in ids]
    if chosen is not None:
        count = len(chosen)
    campaigns: list[dict[str, Any]] = []
    combos = len(_TOPICS) * len(_REGIONS)
    for k in range(count):
        name = f"{_TOPICS[k % len(_TOPICS)]} {_REGIONS[k % len(_REGIONS)]}"
        if k >= combos:
            name += f" {k // combos + 1}"
        last_call: dict[str, Any] | None = None
        if k % 7 != 6:
            date = (_LAST_DAY - dt.timedelta(days=k % 30)).isoformat()
            if k % 5 == 4:
                date += f" {8 + k % 10:02d}:{k * 7 % 60:02d}:{k * 13 % 60:02d}.000000"
            zone = "America/New_York" if k % 11 == 10 else "America/Denver"
            last_call = {"date": date, "timezone_type": 3, "timezone": zone}
        campaigns.append(
            {
                "id": str(1001 + k) if chosen is None else chosen[k],
                "name": name,
                "status": "N" if k % 3 == 2 else "Y",
                "last_call_date": last_call,
            }
        )
    return campaigns


def _campaign_table(
    campaigns: int | Iterable[Mapping[str, Any]] | None,
    campaign_ids: Iterable[str | int] | None,
) -> dict[str, dict[str, Any]]:
    if campaign_ids is not None:
        if isinstance(campaign_ids, (str, bytes)):
            raise TypeError(
                "campaign_ids must be a collection of ids, such as ('111', '222'), not one str"
            )
        if campaigns is not None:
            raise ValueError("give campaigns (a count or the objects) or campaign_ids, not both")
        campaigns = generated_campaigns(0, ids=campaign_ids)
    if campaigns is None:
        campaigns = DEFAULT_CAMPAIGNS
    if isinstance(campaigns, bool):
        raise TypeError("campaigns must be a count or an iterable of campaign dicts, not a bool")
    if isinstance(campaigns, int):
        if campaigns < 0:
            raise ValueError(f"campaigns must be a count >= 0, not {campaigns}")
        campaigns = generated_campaigns(campaigns)
    table: dict[str, dict[str, Any]] = {}
    for given in campaigns:
        if not isinstance(given, Mapping) or "id" not in given:
            raise ValueError(f"each campaign must be a mapping with an 'id', not {given!r}")
        campaign = dict(given)
        campaign["id"] = campaign_id = str(campaign["id"])
        if campaign.get("status") not in ("Y", "N"):
            raise ValueError(f"campaign {campaign_id!r} needs status 'Y' or 'N'")
        if campaign_id in table:
            raise ValueError(f"campaign id {campaign_id!r} is given twice")
        table[campaign_id] = campaign
    return table


def _token_set(tokens: Iterable[str], name: str) -> frozenset[str]:
    if isinstance(tokens, str):
        raise TypeError(
            f"{name} must be a collection of tokens, such as ('abc',), not a single str"
        )
    result = frozenset(tokens)
    if not all(isinstance(token, str) and token for token in result):
        raise TypeError(f"{name} must hold non-empty strings")
    return result


def _latency_range(latency: float | tuple[float, float]) -> tuple[float, float]:
    low, high = latency if isinstance(latency, tuple) else (latency, latency)
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
        raise ValueError(f"latency must be seconds >= 0 or a (low, high) pair, not {latency!r}")
    return float(low), float(high)


def most_in_window(times: Iterable[float], window: float = 1.0) -> int:
    """The most of ``times`` that fall inside any half-open window ``[t, t + window)``.

    The busiest window can always slide right until it starts on a time, so
    the windows starting on each time are the only ones to count.
    """
    ordered = sorted(times)
    most = start = 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


class FakeState:
    """The fake's campaigns, tokens, faults and request log, and the handler core.

    This is all of `FakeConvoso` but its front ends: `FakeConvoso` (in
    ``._fake``) adds them, wrapping this state in ``._transport`` and
    ``._server``, which only call `_respond`. The constructor's arguments are
    documented there.
    """

    #: The token a fake accepts unless told otherwise.
    TOKEN: ClassVar[str] = DEFAULT_TOKEN

    def __init__(
        self,
        campaigns: int | Iterable[Mapping[str, Any]] | None = None,
        *,
        campaign_ids: Iterable[str | int] | None = None,
        tokens: Iterable[str] = (DEFAULT_TOKEN,),
        readonly_tokens: Iterable[str] = (),
        latency: float | tuple[float, float] = 0.0,
        rate_limit: float | None = None,
        retry_after: float = 1.0,
        seed: int = 0,
    ) -> None:
        self._campaigns = _campaign_table(campaigns, campaign_ids)
        self._tokens = _token_set(tokens, "tokens")
        self._readonly_tokens = _token_set(readonly_tokens, "readonly_tokens") - self._tokens
        self._latency = _latency_range(latency)
        if rate_limit is not None and not (math.isfinite(rate_limit) and rate_limit >= 1):
            raise ValueError(
                f"rate_limit must be at least 1 request per second, not {rate_limit!r}"
            )
        self._rate_limit = None if rate_limit is None else math.floor(rate_limit)
        if not (math.isfinite(retry_after) and retry_after >= 0):
            raise ValueError(f"retry_after must be seconds >= 0, not {retry_after!r}")
        self._too_many = Answer(429, _TOO_MANY_BODY, headers=(_retry_after_header(retry_after),))
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._endpoints: dict[str, EndpointHandler] = {}
        self._search_body: bytes | None = None
        self._faults: list[Fault] = []
        self._records: list[RecordedRequest] = []
        self._seq = 0
        self._in_flight = 0
        # Arrival times of accepted requests within the last second.
        self._accepted: deque[float] = deque()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} campaigns={len(self._campaigns)} tokens={len(self._tokens)}"
            f" readonly_tokens={len(self._readonly_tokens)} rate_limit={self._rate_limit}"
            f" faults={len(self._faults)} requests={len(self._records)}>"
        )

    # -- inspection and scripting -------------------------------------------------

    @property
    def tokens(self) -> tuple[str, ...]:
        """The tokens the fake accepts for every request, sorted."""
        return tuple(sorted(self._tokens))

    @property
    def readonly_tokens(self) -> tuple[str, ...]:
        """The tokens that may search but not change a status, sorted."""
        return tuple(sorted(self._readonly_tokens))

    def add_endpoint(self, path: str, handler: EndpointHandler | None = None) -> None:
        """Serve another endpoint: POST ``path`` (below ``/v1``) answers ``handler(fields)``.

        ``handler`` gets the request's form fields, the token left out, and
        returns the JSON object to answer with HTTP 200 (``{"success": False,
        "error": ..., "code": ...}`` for an API error; a `Fault` with ``path=``
        for anything else). Without one, the endpoint echoes: ``{"success": true,
        "path": path, "fields": {...}}``. The token is checked as for the
        campaign endpoints (read-only tokens pass), faults and the rate limit
        apply, and each request is logged in `requests`. The handler runs under
        the fake's lock, once per request that reaches it (a faulted or
        rate-limited one does not), and may read the fake's state::

            inserted: list[dict[str, str]] = []

            def insert(fields: dict[str, str]) -> dict[str, object]:
                inserted.append(fields)
                return {"success": True, "data": {"lead_id": len(inserted)}}

            fake.add_endpoint("/leads/insert", insert)
            fake.add_endpoint("/leads/search")  # echoes the fields back
        """
        path = _strip_prefix("/" + path.lstrip("/"))
        if path in (SEARCH_PATH, STATUS_PATH):
            raise ValueError(f"{path} is one of the fake's own endpoints")
        with self._lock:
            self._endpoints[path] = _echo(path) if handler is None else handler

    def add_fault(self, fault: Fault) -> Fault:
        """Script ``fault``; it is checked after the ones added before it. Returns it."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Forget every scripted fault."""
        with self._lock:
            self._faults.clear()

    def campaign_status(self, campaign_id: str) -> str:
        """The campaign's current status, ``"Y"`` or ``"N"``; `KeyError` if unknown."""
        with self._lock:
            return str(self._campaigns[str(campaign_id)]["status"])

    def statuses(self) -> dict[str, str]:
        """A snapshot of every campaign's status, id -> ``"Y"``/``"N"``."""
        with self._lock:
            return {cid: str(c["status"]) for cid, c in self._campaigns.items()}

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the log of every request seen, in arrival order."""
        with self._lock:
            return list(self._records)

    def reset_requests(self) -> None:
        """Empty the request log and restart request numbering at 1."""
        with self._lock:
            self._records.clear()
            self._seq = 0

    def max_in_window(
        self,
        window: float = 1.0,
        path: str | None = STATUS_PATH,
        accepted_only: bool = True,
    ) -> int:
        """The most logged requests whose arrival times fall within any ``window`` seconds.

        Counts requests to ``path`` (any path if `None`), only those the API
        accepted unless ``accepted_only`` is false. With ``rate_limit=R`` the
        fake keeps ``max_in_window()`` at or under R.
        """
        if not window > 0:
            raise ValueError(f"window must be a positive number of seconds, not {window!r}")
        wanted = None if path is None else _strip_prefix(path)
        times = [
            r.time
            for r in self.requests
            if (wanted is None or r.path == wanted) and (r.accepted or not accepted_only)
        ]
        return most_in_window(times, window)

    # -- the handler core -----------------------------------------------------------

    async def _respond(
        self, method: str, path: str, content_type: str, body: bytes, query: str
    ) -> Answer:
        """Decide the answer to one request, then wait out its delay."""
        answer = self._decide(method, path, content_type, body, query)
        try:
            if answer.delay > 0:
                await anyio.sleep(answer.delay)
        finally:
            with self._lock:
                self._in_flight -= 1
        return answer

    def _decide(
        self, method: str, raw_path: str, content_type: str, body: bytes, query: str
    ) -> Answer:
        arrival = time.monotonic()
        path, in_api = _api_path(raw_path)
        fields = _parse_fields(body.decode("utf-8", "replace")) if FORM_TYPE in content_type else {}
        token_in_query = False
        if query:
            query_fields = _parse_fields(query)
            token_in_query = "auth_token" in query_fields
            fields = {**query_fields, **fields}
        token = fields.get("auth_token")
        campaign_id = fields.get("campaign_id")
        form = fields if token is None else {**fields, "auth_token": MASK}

        with self._lock:
            self._seq += 1
            self._in_flight += 1
            fault = self._match_fault(self._seq, path, campaign_id) if self._faults else None
            if fault is not None and fault.kind != "slow":
                answer = self._fault_answer(fault, path)
            elif not in_api:
                answer = _NO_ROUTE  # Convoso serves its API under /v1 only
            elif self._admit(arrival):
                answer = self._route(method, path, fields, token)
            else:
                answer = self._too_many
            delay = self._latency[0]
            if self._latency[1] > delay:
                delay = self._rng.uniform(delay, self._latency[1])
            if fault is not None:
                delay += fault.delay
            self._records.append(
                RecordedRequest(
                    seq=self._seq,
                    time=arrival,
                    path=path,
                    form=form,
                    token_ok=token in self._tokens or token in self._readonly_tokens,
                    token_in_query=token_in_query,
                    in_flight=self._in_flight,
                    status=answer.status,
                    fault=None if fault is None else fault.kind,
                    campaign_id=campaign_id,
                )
            )
        return attrs.evolve(answer, delay=delay) if delay > 0 else answer

    # The helpers below run with self._lock held.

    def _match_fault(self, seq: int, path: str, campaign_id: str | None) -> Fault | None:
        for fault in self._faults:
            if (
                fault.spent
                or (fault.on_requests is not None and seq not in fault.on_requests)
                or (fault.path is not None and fault.path != path)
                or (fault.campaign_id is not None and fault.campaign_id != campaign_id)
                # Drawn last, so the RNG advances only for otherwise matching requests.
                or (fault.probability is not None and self._rng.random() >= fault.probability)
            ):
                continue
            fault.hits += 1
            return fault
        return None

    def _fault_answer(self, fault: Fault, path: str) -> Answer:
        if fault.kind == "drop":
            return _DROP
        if fault.kind == "bad_json":
            return _BAD_JSON
        if fault.kind == "bad_shape":
            return _BAD_SHAPES.get(path, _BAD_SHAPE_OTHER)
        retry_after = (
            self._too_many.headers
            if fault.retry_after is None
            else (_retry_after_header(fault.retry_after),)
        )
        if fault.kind == "rate_limit":
            return Answer(429, _TOO_MANY_BODY, headers=retry_after)
        try:
            phrase = http.HTTPStatus(fault.status).phrase
        except ValueError:
            phrase = "Error"
        page = f"<html><body><h1>{fault.status} {phrase}</h1></body></html>".encode()
        if fault.status != 429 and fault.retry_after is None:
            retry_after = ()
        return Answer(fault.status, page, HTML_TYPE, retry_after)

    def _admit(self, arrival: float) -> bool:
        """Count the request against the sliding one-second window, if it fits."""
        if self._rate_limit is None:
            return True
        window = self._accepted
        while window and window[0] <= arrival - 1.0:
            window.popleft()
        if len(window) >= self._rate_limit:
            return False
        window.append(arrival)
        return True

    def _route(
        self, method: str, path: str, fields: Mapping[str, str], token: str | None
    ) -> Answer:
        handler = self._endpoints.get(path)
        if handler is None and path not in (SEARCH_PATH, STATUS_PATH):
            return _NO_ROUTE
        if method != "POST":
            return _NOT_ALLOWED
        if token in self._tokens:
            pass
        elif token in self._readonly_tokens:
            if path == STATUS_PATH:
                return _NO_PERMISSION
        else:
            return _INVALID_TOKEN
        if handler is not None:
            form = {name: value for name, value in fields.items() if name != "auth_token"}
            return _handled(path, handler, form)
        if path == SEARCH_PATH:
            return Answer(200, self._search_payload())
        return self._set_status(fields.get("campaign_id"), fields.get("status"))

    def _search_payload(self) -> bytes:
        # Cached: with thousands of campaigns, encoding dominates a search.
        if self._search_body is None:
            self._search_body = _json({"data": list(self._campaigns.values())})
        return self._search_body

    def _set_status(self, campaign_id: str | None, status: str | None) -> Answer:
        campaign = None if campaign_id is None else self._campaigns.get(campaign_id)
        if campaign is None:
            return _NOT_FOUND_CAMPAIGN
        active = _parse_status(status)
        if active is None:
            return _BAD_STATUS
        wanted = "Y" if active else "N"
        if campaign["status"] != wanted:
            campaign["status"] = wanted
            self._search_body = None
        return _OK
