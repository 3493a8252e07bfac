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

from .errors import ResponseDecodeError

__all__ = ["Campaign", "CampaignStatus", "LastCallDate", "structure"]

T = TypeVar("T")


class CampaignStatus(str, enum.Enum):
    """A campaign's state as Convoso spells it."""

    ACTIVE = "Y"
    INACTIVE = "N"

    @classmethod
    def from_active(cls, active: bool) -> CampaignStatus:
        return cls.ACTIVE if active else cls.INACTIVE

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class LastCallDate:
    """When a campaign last placed a call, as PHP's DateTime serialises it.

    ``date`` is the calendar day, a `datetime.date`. PHP sometimes sends the
    full ``"2026-03-03 14:05:09.000000"`` form; then ``date`` is a naive
    `datetime.datetime` (a `date` subclass) that keeps the time of day.
    ``timezone_type`` is PHP's: 1 = UTC offset
    (``"+02:00"``), 2 = abbreviation (``"MST"``), 3 = zone name
    (``"America/Denver"``).
    """

    date: dt.date
    timezone_type: int
    timezone: str

    def to_datetime(self) -> dt.datetime:
        """The moment as an aware datetime in its own zone (midnight if no time was given).

        >>> LastCallDate(dt.date(2026, 3, 3), 3, "America/Denver").to_datetime()
        datetime.datetime(2026, 3, 3, 0, 0, tzinfo=zoneinfo.ZoneInfo(key='America/Denver'))
        """
        if isinstance(self.date, dt.datetime):
            return self.date.replace(tzinfo=self.tzinfo())
        return dt.datetime.combine(self.date, dt.time(), tzinfo=self.tzinfo())

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
        # PHP's DateTime form, "2026-03-03 14:05:09.000000": keep the time.
        return dt.datetime.fromisoformat(value)
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
