"""The data Convoso returns, as frozen attrs classes, and the one converter that builds them.

Conversion rules live here and nowhere else: `structure(payload, type)` turns
decoded JSON into models, raising `ResponseDecodeError` with the path of the
first bad field (``data[3].status``) when the payload is not of the documented
shape. Unknown extra fields are ignored, so Convoso may add fields freely.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
import cattrs
from cattrs.v import format_exception, transform_error

from ._errors import ResponseDecodeError

__all__ = ["Campaign", "CampaignStatus", "LastCallDate", "structure"]

T = TypeVar("T")


class CampaignStatus(str, enum.Enum):
    """A campaign's state as Convoso spells it (``Y``/``N``).

    `label` is the word this library shows people and prints in JSON:
    ``"active"`` or ``"inactive"``.
    """

    ACTIVE = "Y"
    INACTIVE = "N"

    @property
    def label(self) -> str:
        """``"active"`` or ``"inactive"``: the one status vocabulary of JSON, tables and logs."""
        return "active" if self is CampaignStatus.ACTIVE else "inactive"

    def __str__(self) -> str:
        return self.value


def _calendar_day(value: dt.date) -> dt.date:
    if isinstance(value, dt.datetime):
        raise TypeError(
            "LastCallDate.date is a calendar day (datetime.date); pass the time of day as time="
        )
    return value


@attrs.frozen
class LastCallDate:
    """When a campaign last placed a call, as PHP's DateTime serialises it.

    ``date`` is always the calendar day, a `datetime.date`, so campaigns sort
    and compare by it whatever form Convoso sent. PHP sometimes sends the full
    ``"2026-03-03 14:05:09.000000"`` form: its time of day is then ``time`` (a
    naive `datetime.time` on the zone's wall clock), otherwise ``time`` is
    None. `to_datetime` gives the aware moment in the zone. ``timezone_type``
    is PHP's: 1 = UTC offset (``"+02:00"``), 2 = abbreviation (``"MST"``),
    3 = zone name (``"America/Denver"``).

        >>> last = LastCallDate(dt.date(2026, 3, 3), 3, "America/Denver", dt.time(14, 5, 9))
        >>> str(last)
        '2026-03-03 14:05:09 America/Denver'
        >>> last.to_dict()["time"]
        '14:05:09'
    """

    date: dt.date = attrs.field(converter=_calendar_day)
    timezone_type: int
    timezone: str
    time: dt.time | None = None

    def __str__(self) -> str:
        if self.time is None:
            return f"{self.date.isoformat()} {self.timezone}"
        return f"{self.date.isoformat()} {self.time.isoformat()} {self.timezone}"

    def to_datetime(self) -> dt.datetime:
        """The moment as an aware datetime in its own zone (midnight if no time was given).

        >>> LastCallDate(dt.date(2026, 3, 3), 3, "America/Denver").to_datetime()
        datetime.datetime(2026, 3, 3, 0, 0, tzinfo=zoneinfo.ZoneInfo(key='America/Denver'))

        Raises ValueError if the zone is not recognised.
        """
        return dt.datetime.combine(self.date, self.time or dt.time(), tzinfo=self.tzinfo())

    def tzinfo(self) -> dt.tzinfo:
        """The zone this date is expressed in. Raises ValueError if it is not recognised."""
        offset = _UTC_OFFSET.fullmatch(self.timezone)
        if offset:
            sign = -1 if offset["sign"] == "-" else 1
            delta = dt.timedelta(hours=int(offset["hours"]), minutes=int(offset["minutes"]))
            return dt.timezone(sign * delta)
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r} in last_call_date") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``date`` (``"2026-03-03"``), ``time`` (``"14:05:09"`` or None), the zone.

        The same shape as ``convoso campaigns list --json`` prints.
        """
        return {
            "date": self.date.isoformat(),
            "time": None if self.time is None else self.time.isoformat(),
            "timezone": self.timezone,
            "timezone_type": self.timezone_type,
        }


_UTC_OFFSET = re.compile(r"(?P<sign>[+-])(?P<hours>\d{2}):?(?P<minutes>\d{2})")


@attrs.frozen
class Campaign:
    """One campaign, as listed by `campaigns.search()`."""

    id: str
    name: str
    status: CampaignStatus
    last_call_date: LastCallDate | None = None

    @property
    def is_active(self) -> bool:
        """True when the campaign is active (status ``Y``)."""
        return self.status is CampaignStatus.ACTIVE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, the shape ``convoso campaigns list --json`` prints::

            {"id": "111", "name": "Sales", "status": "active", "active": true,
             "last_call_date": {"date": "2026-03-03", "time": null,
                                "timezone": "America/Denver", "timezone_type": 3}}

        Return it from a web handler (FastAPI, Starlette) as is.
        """
        last = self.last_call_date
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status.label,
            "active": self.is_active,
            "last_call_date": None if last is None else last.to_dict(),
        }


# Structure hooks: strict where a wrong type would hide a broken payload
# (a dict where a name belongs), lenient where Convoso's PHP is known to vary
# (ids as numbers, PHP's full datetime form, MySQL's zero date).


def _structure_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _structure_id(value: Any, _: type) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a non-empty id string, got {type(value).__name__}")


def _structure_int(value: Any, _: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise TypeError(f"expected an integer, got {type(value).__name__}")


_STATUSES = {
    "Y": CampaignStatus.ACTIVE,
    "N": CampaignStatus.INACTIVE,
    "y": CampaignStatus.ACTIVE,
    "n": CampaignStatus.INACTIVE,
}


def _structure_status(value: Any, _: type) -> CampaignStatus:
    status = _STATUSES.get(value) if isinstance(value, str) else None
    if status is None:
        raise ValueError(f"expected campaign status 'Y' or 'N', got {value!r}")
    return status


_NO_DATE = "0000-00-00"


def _structure_php_date(value: Any, _: type) -> dt.date:
    if not isinstance(value, str):
        raise TypeError(f"expected a date string, got {type(value).__name__}")
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value)
        # PHP's DateTime form, "2026-03-03 14:05:09.000000": the day here;
        # the time of day is read into its own field by the caller.
        return dt.datetime.fromisoformat(value).date()
    except ValueError:
        raise ValueError(
            f"expected 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS.ffffff', got {value!r}"
        ) from None


def _structure_last_call_date(converter: cattrs.Converter, value: Any) -> LastCallDate | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"expected an object or null, got {type(value).__name__}")
    raw_date = value.get("date")
    if raw_date is None or (isinstance(raw_date, str) and raw_date.startswith(_NO_DATE)):
        # Campaigns that never called come back with no date, or MySQL's zero date.
        return None
    # An account's campaigns share a handful of (date, zone) pairs; building
    # each once keeps a 10,000-campaign search cheap. The models are frozen.
    key = (raw_date, value.get("timezone_type"), value.get("timezone"))
    try:
        cached = _last_call_dates.get(key)
    except TypeError:  # unhashable junk: let the converter report it
        cached = None
    if cached is None:
        cached = converter.structure(value, LastCallDate)
        if len(raw_date) > 10:  # valid, or structuring would have failed: keep its time
            time_of_day = dt.datetime.fromisoformat(raw_date).time()
            cached = attrs.evolve(cached, time=time_of_day)
        if len(_last_call_dates) < _LAST_CALL_DATE_CACHE_SIZE:
            _last_call_dates[key] = cached
    return cached


_LAST_CALL_DATE_CACHE_SIZE = 4096
_last_call_dates: dict[tuple[Any, Any, Any], LastCallDate] = {}


def _make_converter(*, detailed: bool) -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=False, detailed_validation=detailed)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(CampaignStatus, _structure_status)
    converter.register_structure_hook(dt.date, _structure_php_date)
    converter.register_structure_hook(
        LastCallDate | None,
        lambda value, _: _structure_last_call_date(converter, value),
    )
    converter.register_structure_hook(
        LastCallDate,
        cattrs.gen.make_dict_structure_fn(
            LastCallDate, converter, time=cattrs.gen.override(omit=True)
        ),
    )
    campaign_fn = cattrs.gen.make_dict_structure_fn(
        Campaign,
        converter,
        id=cattrs.gen.override(struct_hook=_structure_id),
    )

    def structure_campaign(value: Any, cl: type) -> Campaign:
        if not isinstance(value, dict):
            raise TypeError(f"expected a campaign object, got {type(value).__name__}")
        return campaign_fn(value, cl)

    converter.register_structure_hook(Campaign, structure_campaign)
    return converter


# Two converters with the same rules: the fast one builds every answer; the
# detailed one runs only on a payload that failed, to name the bad field.
_fast = _make_converter(detailed=False)
_detailed = _make_converter(detailed=True)


def structure(payload: Any, cl: type[T], *, path: str = "") -> T:
    """Build ``cl`` from decoded JSON, or raise `ResponseDecodeError` naming the bad field.

    ``path`` is where ``payload`` sits in the whole answer (``"data"``), so
    the error names the full path: ``data[3].status``.
    """
    try:
        return _fast.structure(payload, cl)
    except Exception:  # any failure means a malformed payload: find out where
        pass
    try:
        _detailed.structure(payload, cl)
    except Exception as exc:  # cattrs raises a tree of ordinary exceptions
        raise _decode_error(exc, path) from None
    raise ResponseDecodeError("Convoso's answer is not of the documented shape", path=path)


def _describe_problem(exc: BaseException, cl: type | None) -> str:
    # Our own hooks already say what was expected and what came instead.
    if isinstance(exc, (TypeError, ValueError)) and str(exc).startswith("expected "):
        return str(exc)
    return format_exception(exc, cl)


def _decode_error(exc: Exception, path: str) -> ResponseDecodeError:
    problems = transform_error(exc, path="$", format_exception=_describe_problem)
    first = problems[0] if problems else f"{type(exc).__name__}: {exc}"
    # transform_error says "<problem> @ $.data[3].status"; keep the path apart.
    problem, _, where = first.rpartition(" @ ")
    if not problem:
        problem, where = first, "$"
    full_path = path + where[1:] if where.startswith("$") else where
    full_path = full_path.lstrip(".")
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return ResponseDecodeError(
        f"Convoso's answer is not of the documented shape: {problem}{more}", path=full_path
    )


# Public names report the package, where users import them from (as httpx's do).
for _public in (Campaign, CampaignStatus, LastCallDate):
    _public.__module__ = "convoso_async"
