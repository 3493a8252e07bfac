"""The schedule model: weekly windows, and which campaigns they want active when.

A `Window` names campaigns that should be active on some days of the week,
from a start to an end on the local wall clock of a time zone. A `Schedule` is
a set of windows. Reading them from a TOML file is `._reader`'s job; this
module knows nothing of files.

Meaning: a campaign named by at least one window is wanted *active* at an
instant iff the instant falls inside any window naming it (overlapping windows
are a union), and *inactive* otherwise. Campaigns named by no window are not
part of the schedule and are never touched.

An instant is inside a window iff, converted to the window's zone, its local
date falls on one of ``days`` and its local wall time ``t`` has
``start <= t < end``. Membership is decided on the wall clock alone, which
fixes what happens when daylight saving time moves the clock:

* **Spring forward (a gap).** Wall times in the gap never happen. A window
  whose start (or end) is in the gap opens (or closes) at the first instant
  that exists after it: the moment of the transition. A window lying entirely
  inside the gap does not open that day.
* **Fall back (an overlap).** A wall time that occurs twice is inside a window
  whenever *either* occurrence is, because both read the same on the clock. So
  a 01:00-01:30 window lasts an hour that night, a window spanning the whole
  repeated hour lasts an hour longer, and a window that ends inside the
  repeated hour (00:30-01:30 in Denver) closes at the first 01:30, reopens
  when the clock goes back to 01:00, and closes again at the second 01:30.

`Schedule.next_boundary` follows the same rule, so the instants it returns are
exactly those where some window's membership changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import attrs

__all__ = ["Schedule", "Window"]

_UTC = dt.timezone.utc

_WEEKDAYS = frozenset(range(5))
_WEEKENDS = frozenset({5, 6})
_EVERY_DAY = frozenset(range(7))
_DAY_GROUPS: dict[str, frozenset[int]] = {
    "weekdays": _WEEKDAYS,
    "weekends": _WEEKENDS,
    "daily": _EVERY_DAY,
}
_DAY_ABBREVIATIONS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

#: The smallest step of a datetime: a window's state "just before" an instant.
_TICK = dt.timedelta(microseconds=1)
#: How many local days past ``after`` `next_boundary` looks. Windows repeat
#: weekly, so any window that ever changes state changes within 7 days (plus a
#: DST shift); a little more is a safety margin.
_SCAN_DAYS = 9
#: Step, in seconds, of the scan for UTC offset changes. Current tzdb rules never
#: change a zone's offset twice within three hours, so one probe per step sees each
#: change, and a bisection finds its exact second.
_OFFSET_PROBE = 3 * 3600


def _as_zone(value: ZoneInfo | str) -> ZoneInfo:
    return value if isinstance(value, ZoneInfo) else ZoneInfo(value)


@attrs.frozen
class Window:
    """One weekly window: ``campaigns`` are wanted active on ``days`` from ``start`` to ``end``.

    ``days`` holds ``date.weekday()`` numbers (0 = Monday). ``end`` is None
    for "until midnight" (``"24:00"`` in a file). Times are local wall-clock
    times in ``timezone``; see the module docstring for what that means across
    daylight saving changes. ``line`` is where the window starts in its file.

        >>> window = Window("sales", frozenset({0}), dt.time(8), dt.time(17), ("111",),
        ...                 "America/Denver")
        >>> window.contains(dt.datetime(2026, 3, 9, 15, 0, tzinfo=dt.timezone.utc))
        True
    """

    name: str
    days: frozenset[int]
    start: dt.time
    end: dt.time | None
    campaigns: tuple[str, ...]
    timezone: ZoneInfo = attrs.field(converter=_as_zone)
    line: int = 0
    timezone_key: str = attrs.field()

    @timezone_key.default
    def _timezone_key_default(self) -> str:
        return str(self.timezone)

    def __attrs_post_init__(self) -> None:
        if not self.days or not self.days <= _EVERY_DAY:
            raise ValueError(f"days must be a non-empty set of 0..6 (0 = Monday), not {self.days}")
        if self.start.tzinfo is not None or (self.end is not None and self.end.tzinfo is not None):
            raise ValueError("start and end are wall-clock times; give them without tzinfo")
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start} (or None)")
        if not self.campaigns:
            raise ValueError("a window needs at least one campaign")

    def contains(self, at: dt.datetime) -> bool:
        """Whether the aware instant ``at`` falls inside this window.

        Raises ValueError if ``at`` is naive: a wall time without a zone
        names no instant.
        """
        local = _require_aware(at, "at").astimezone(self.timezone)
        if local.weekday() not in self.days:
            return False
        # time() comparisons ignore `fold`: both occurrences of a repeated wall
        # time compare equal, which is the documented fall-back rule.
        wall = local.time()
        return self.start <= wall and (self.end is None or wall < self.end)

    def next_boundary(self, after: dt.datetime) -> dt.datetime | None:
        """The first instant strictly after ``after`` where this window opens or closes.

        Returned in UTC. None if the window never changes (open around the
        clock every day).
        """
        after = _require_aware(after, "after").astimezone(_UTC)
        zone = self.timezone
        first_day = after.astimezone(zone).date() - dt.timedelta(days=1)
        # State depends only on the local wall clock, so it can change only
        # where the clock passes an edge of the window or jumps (DST).
        edges = {self.start, dt.time(0) if self.end is None else self.end}
        candidates: set[dt.datetime] = set()
        for offset in range(_SCAN_DAYS + 2):
            day = first_day + dt.timedelta(days=offset)
            for edge in edges:
                candidates.update(_instants_of(dt.datetime.combine(day, edge), zone))
        start_ts = int(after.timestamp())
        candidates.update(_offset_changes(zone, start_ts, start_ts + (_SCAN_DAYS + 3) * 86400))
        for instant in sorted(candidates):
            if instant > after and self.contains(instant) != self.contains(instant - _TICK):
                return instant
        return None

    def describe(self) -> str:
        """One line for a plan: ``sales hours: weekdays 08:00-17:00 America/Denver: 111, 222``."""
        end = "24:00" if self.end is None else _format_time(self.end)
        return (
            f"{self.name}: {_format_days(self.days)} {_format_time(self.start)}-{end}"
            f" {self.timezone_key}: {', '.join(self.campaigns)}"
        )


@attrs.frozen
class Schedule:
    """A set of windows; answers "which campaigns should be active now?".

    The one users hold is `convoso_async.schedule.Schedule`, this class plus
    reading from a file (`Schedule.load`, `Schedule.from_toml`). Built by hand:

        >>> window = Window("sales", frozenset({0, 1, 2, 3, 4}), dt.time(8), dt.time(17),
        ...                 ("111",), "America/Denver")
        >>> Schedule((window,)).desired_states(
        ...     dt.datetime(2026, 3, 9, 15, 0, tzinfo=dt.timezone.utc))
        {'111': True}
    """

    windows: tuple[Window, ...]
    source: str = "<schedule>"
    #: The file's top-level ``timezone``, if it has one.
    timezone: ZoneInfo | None = attrs.field(default=None, kw_only=True)

    @property
    def zone(self) -> ZoneInfo | None:
        """The schedule's own zone: its top-level ``timezone``, else the one every window uses.

        None when the windows use several zones and the file names none. The
        command line reads a bare ``--at`` time and prints times in this zone.
        """
        if self.timezone is not None:
            return self.timezone
        zones = {window.timezone_key: window.timezone for window in self.windows}
        return next(iter(zones.values())) if len(zones) == 1 else None

    @property
    def campaign_ids(self) -> frozenset[str]:
        """Every campaign some window names: the campaigns this schedule manages."""
        return frozenset(campaign for window in self.windows for campaign in window.campaigns)

    def desired_states(self, at: dt.datetime) -> dict[str, bool]:
        """Each scheduled campaign -> whether it should be active at ``at`` (aware).

        Campaigns appear in the order the file first names them. Campaigns
        named by no window are absent: the schedule does not manage them.
        Raises ValueError if ``at`` is naive.
        """
        _require_aware(at, "at")
        states: dict[str, bool] = {}
        for window in self.windows:
            inside = window.contains(at)
            for campaign in window.campaigns:
                states[campaign] = states.get(campaign, False) or inside
        return states

    def next_boundary(self, after: dt.datetime) -> dt.datetime | None:
        """The first instant strictly after ``after`` where any window opens or closes.

        Aware, in UTC. None if no window ever changes (no windows, or every
        window is open around the clock). `desired_states` is constant from
        one boundary up to the next, so a runner can sleep until it. Raises
        ValueError if ``after`` is naive.
        """
        _require_aware(after, "after")
        boundaries = [window.next_boundary(after) for window in self.windows]
        return min((b for b in boundaries if b is not None), default=None)

    def describe(self) -> list[str]:
        """Human-readable lines, one per window, for a plan printout."""
        if not self.windows:
            return [f"{self.source}: no windows; no campaign is scheduled"]
        return [window.describe() for window in self.windows]


# --- time arithmetic -------------------------------------------------------


def _require_aware(value: dt.datetime, name: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.utcoffset() is None:
        raise ValueError(
            f"{name} must be timezone-aware, got naive {value.isoformat()}; "
            "use e.g. datetime.now(timezone.utc) or attach a tzinfo"
        )
    return value


def _instants_of(wall: dt.datetime, zone: ZoneInfo) -> Iterator[dt.datetime]:
    """Both UTC readings of a local wall time: one instant, or two in a fall-back overlap.

    For a wall time in a spring-forward gap, both readings are instants whose
    clock says something else. They are harmless: callers keep only instants
    where a window's state changes, and the state changes at the transition.
    """
    for fold in (0, 1):
        yield wall.replace(tzinfo=zone, fold=fold).astimezone(_UTC)


def _offset_changes(zone: ZoneInfo, start: int, stop: int) -> Iterator[dt.datetime]:
    """The instants (UTC) in ``(start, stop]`` (POSIX seconds) where ``zone`` changes offset."""

    def offset(timestamp: int) -> dt.timedelta | None:
        return dt.datetime.fromtimestamp(timestamp, zone).utcoffset()

    low, low_offset = start, offset(start)
    while low < stop:
        high = min(low + _OFFSET_PROBE, stop)
        high_offset = offset(high)
        if high_offset != low_offset:
            before, after = low, high
            while after - before > 1:
                middle = (before + after) // 2
                if offset(middle) == low_offset:
                    before = middle
                else:
                    after = middle
            yield dt.datetime.fromtimestamp(after, _UTC)
        low, low_offset = high, high_offset


def _format_time(value: dt.time) -> str:
    if value.second or value.microsecond:
        return value.isoformat()
    return value.strftime("%H:%M")


def _format_days(days: frozenset[int]) -> str:
    for group, members in _DAY_GROUPS.items():
        if days == members:
            return group
    # Runs of three or more days read better as ranges: "Mon-Wed, Fri".
    parts: list[str] = []
    ordered = sorted(days)
    run_start = 0
    for index, day in enumerate(ordered):
        if index + 1 < len(ordered) and ordered[index + 1] == day + 1:
            continue
        run = ordered[run_start : index + 1]
        if len(run) >= 3:
            parts.append(f"{_DAY_ABBREVIATIONS[run[0]]}-{_DAY_ABBREVIATIONS[run[-1]]}")
        else:
            parts.extend(_DAY_ABBREVIATIONS[d] for d in run)
        run_start = index + 1
    return ", ".join(parts)


# A public name reports its public module, where users import it from (as httpx's do).
Window.__module__ = "convoso_async.schedule"
