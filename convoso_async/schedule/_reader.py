"""Reading a schedule from TOML, naming the line of every problem.

A schedule is a TOML file of weekly windows. Each window names campaigns that
should be active during it, on local wall-clock time in a time zone::

    timezone = "America/Denver"        # for windows that don't name their own

    [[window]]
    name = "sales hours"               # optional, shown in plans and messages
    days = "weekdays"                  # or "weekends", "daily", ["mon", "Wednesday", ...]
    start = "08:00"                    # HH:MM or HH:MM:SS, 24-hour
    end = "17:00"                      # after start, same day; "24:00" = end of day
    campaigns = ["111", 222]           # ints become decimal strings
    # timezone = "Europe/Berlin"       # optional per-window override

`._model` says what windows mean; this module turns text into them, and gives
`Schedule` its ``load`` and ``from_toml``. tomllib returns values without
positions, so `_SourceLines` finds each key's line by scanning the text.

Every problem with a file is a `ScheduleError` whose message names the line:
``shifts.toml:7: unknown time zone 'America/Denverr' (did you mean 'America/Denver'?)``.

Example::

    schedule = Schedule.load("shifts.toml")
    wanted = schedule.desired_states(datetime.now(timezone.utc))  # {"111": True, ...}
    wake_at = schedule.next_boundary(datetime.now(timezone.utc))
"""

from __future__ import annotations

import datetime as dt
import difflib
import importlib
import os
import re
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from convoso_async._errors import ConfigurationError

from . import _model as model
from ._model import _DAY_GROUPS, Window, _format_time

__all__ = ["Schedule", "ScheduleError"]

T = TypeVar("T")

#: Day names, as written in a file (case-insensitive), to ``date.weekday()``.
_DAY_NAMES: dict[str, int] = {
    name: number
    for number, names in enumerate(
        [
            ("mon", "monday"),
            ("tue", "tuesday"),
            ("wed", "wednesday"),
            ("thu", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
            ("sun", "sunday"),
        ]
    )
    for name in names
}

_TOP_LEVEL_KEYS = ("timezone", "window")
_WINDOW_KEYS = ("name", "days", "start", "end", "campaigns", "timezone")
#: What to show a user who left a required window key out.
_REQUIRED_WINDOW_KEYS = {
    "days": 'days = "weekdays"',
    "start": 'start = "08:00"',
    "end": 'end = "17:00"',
    "campaigns": 'campaigns = ["111"]',
}


class ScheduleError(ConfigurationError):
    """A schedule file is unreadable or wrong. Nothing was applied.

    The message is ``SOURCE:LINE: problem`` (``SOURCE: problem`` when no line
    applies, such as a missing file), like a compiler's, so editors can jump
    to it.

    Attributes:
        source: the file name (or ``"<schedule>"`` for text).
        line: the 1-based line of the problem, or None.
        problem: the description alone, without source and line.
    """

    def __init__(self, problem: str, *, source: str, line: int | None = None) -> None:
        self.problem = problem
        self.source = source
        self.line = line
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {problem}")


class Schedule(model.Schedule):
    """A set of windows read from one file; answers "which campaigns should be active now?".

    >>> schedule = Schedule.from_toml('''
    ... timezone = "America/Denver"
    ... [[window]]
    ... days = "weekdays"
    ... start = "08:00"
    ... end = "17:00"
    ... campaigns = ["111"]
    ... ''')
    >>> schedule.desired_states(dt.datetime(2026, 3, 9, 15, 0, tzinfo=dt.timezone.utc))
    {'111': True}

    What the windows mean is `._model.Schedule`'s; this class adds reading them.
    """

    __slots__ = ()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Schedule:
        """Read a schedule file (UTF-8 TOML). Every problem is a `ScheduleError`."""
        source = os.fspath(path)
        try:
            with open(source, "rb") as file:
                data = file.read()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ScheduleError(f"cannot read schedule file: {reason}", source=source) from None
        try:
            # utf-8-sig: a byte-order mark (Windows editors add one) is not an error.
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise ScheduleError("the file is not UTF-8 text", source=source, line=line) from None
        return cls.from_toml(text, source=source)

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<schedule>") -> Schedule:
        """Build a schedule from TOML text; ``source`` names it in error messages."""
        return _Reader(text, source).read()


class _Invalid(Exception):
    """A bad value; the reader adds the source and line of its key."""


def _kind(value: object) -> str:
    """What a TOML value is, in the file's terms."""
    kinds: list[tuple[type, str]] = [
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
        (dt.datetime, "a date-time"),
        (dt.date, "a date"),
        (dt.time, "a time"),
    ]
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def _suggest(word: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _parse_name(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"name must be a string, not {_kind(value)}")
    if not value.strip():
        raise _Invalid("name is empty; give the window a name or leave the key out")
    return value.strip()


def _parse_days(value: object) -> frozenset[int]:
    words: list[object] = list(value) if isinstance(value, list) else [value]
    if not words:
        raise _Invalid('days is empty; list at least one day, or use "weekdays", "daily"...')
    days: set[int] = set()
    for word in words:
        if not isinstance(word, str):
            raise _Invalid(f'days must be day names such as "mon", not {_kind(word)}')
        key = word.strip().lower()
        if key in _DAY_GROUPS:
            days |= _DAY_GROUPS[key]
        elif key in _DAY_NAMES:
            days.add(_DAY_NAMES[key])
        else:
            hint = _suggest(key, (*_DAY_NAMES, *_DAY_GROUPS))
            raise _Invalid(
                f"unknown day {word!r}{hint}; use mon..sun, full day names,"
                ' "weekdays", "weekends" or "daily"'
            )
    return frozenset(days)


_TIME_TEXT = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def _parse_time(value: object, key: str) -> dt.time | None:
    """A ``HH:MM[:SS]`` string or a TOML local time. ``"24:00"`` (end of day) gives None."""
    if isinstance(value, dt.time):
        return value
    if not isinstance(value, str):
        raise _Invalid(f'{key} must be a time of day such as "08:00", not {_kind(value)}')
    match = _TIME_TEXT.fullmatch(value.strip())
    if match is None:
        raise _Invalid(
            f'{key} {value!r} is not a time of day; write "HH:MM" or "HH:MM:SS" (24-hour)'
        )
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if (hour, minute, second) == (24, 0, 0):
        return None
    if hour > 23 or minute > 59 or second > 59:
        at_most = "24:00" if key == "end" else "23:59:59"
        raise _Invalid(f"{key} {value!r} is not a time of day; it must be 00:00 to {at_most}")
    return dt.time(hour, minute, second)


def _parse_start(value: object) -> dt.time:
    start = _parse_time(value, "start")
    if start is None:
        raise _Invalid("start cannot be 24:00; the latest start is 23:59:59")
    return start


def _parse_end(value: object) -> dt.time | None:
    return _parse_time(value, "end")


def _parse_campaigns(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Invalid(f'campaigns must be an array such as ["111", "222"], not {_kind(value)}')
    if not value:
        raise _Invalid("campaigns is empty; a window must name at least one campaign")
    campaigns: dict[str, None] = {}  # ordered set: duplicates are harmless, keep first
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            campaigns[str(item)] = None
        elif isinstance(item, str) and item.strip():
            campaigns[item.strip()] = None
        else:
            shown = repr(item) if isinstance(item, (str, int)) else _kind(item)
            raise _Invalid(f"campaign ids must be non-empty strings or integers, not {shown}")
    return tuple(campaigns)


#: Zone names that look like a region's local time but are not: tzdata keeps
#: them only for backward compatibility ("backward" file), and EST, MST and
#: HST never observe daylight saving. Each maps to the zone people mean.
_LEGACY_ZONES: Final = {
    "EST": "America/New_York",
    "MST": "America/Denver",
    "HST": "Pacific/Honolulu",
    "EST5EDT": "America/New_York",
    "CST6CDT": "America/Chicago",
    "MST7MDT": "America/Denver",
    "PST8PDT": "America/Los_Angeles",
    "CET": "Europe/Paris",
    "EET": "Europe/Athens",
    "MET": "Europe/Paris",
    "WET": "Europe/Lisbon",
}
#: Abbreviations people write that tzdata does not know at all.
_ABBREVIATIONS: Final = {
    "EDT": "America/New_York",
    "CST": "America/Chicago",
    "CDT": "America/Chicago",
    "MDT": "America/Denver",
    "PST": "America/Los_Angeles",
    "PDT": "America/Los_Angeles",
    "AKST": "America/Anchorage",
    "AKDT": "America/Anchorage",
}


def _parse_zone(value: object) -> ZoneInfo:
    if not isinstance(value, str):
        raise _Invalid(f'timezone must be a name such as "America/Denver", not {_kind(value)}')
    meant = _LEGACY_ZONES.get(value.upper()) or _ABBREVIATIONS.get(value.upper())
    if meant is not None:
        what = (
            "a fixed UTC offset all year, with no daylight saving"
            if value.upper() in ("EST", "MST", "HST")
            else "a legacy name IANA keeps only for backward compatibility"
            if value.upper() in _LEGACY_ZONES
            else "an abbreviation, not a time zone name"
        )
        raise _Invalid(
            f"time zone {value!r} is {what}; use a location name such as {meant!r} "
            "(which follows daylight saving) or 'UTC'"
        )
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    hint = _suggest(value, available_timezones()) or " (use an IANA name such as 'America/Denver')"
    raise _Invalid(f"unknown time zone {value!r}{hint}")


def _toml_loads(text: str, source: str) -> dict[str, Any]:
    # Imported by name: tomllib is 3.11+, and a static import of either module
    # would fail type checking on the other Python version.
    for module_name in ("tomllib", "tomli"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        return cast("dict[str, Any]", module.loads(text))
    raise ScheduleError(
        "reading schedules needs Python 3.11+ (tomllib) or, on Python 3.10, `pip install tomli`",
        source=source,
    )


_DECODE_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


class _Reader:
    """Turns TOML text into a `Schedule`, naming the line of the first problem."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.lines = _SourceLines(text)

    def error(self, problem: str, line: int | None) -> ScheduleError:
        return ScheduleError(problem, source=self.source, line=line)

    def read(self) -> Schedule:
        document = self.parse()
        for key in document:
            if key not in _TOP_LEVEL_KEYS:
                if key in _WINDOW_KEYS:
                    hint = " (window settings go inside a [[window]] block)"
                else:
                    hint = _suggest(key, _TOP_LEVEL_KEYS)
                problem = f"unknown top-level key {key!r}{hint}; expected timezone and [[window]]s"
                raise self.error(problem, self.lines.top_key(key))
        default_zone = None
        if "timezone" in document:
            default_zone = self.field(
                _parse_zone, document["timezone"], self.lines.top_key("timezone")
            )
        raw_windows = document.get("window", [])
        if not isinstance(raw_windows, list):
            problem = "each window must be a [[window]] block (double brackets)"
            raise self.error(problem, self.lines.top_key("window"))
        windows = tuple(
            self.window(index, raw, default_zone) for index, raw in enumerate(raw_windows)
        )
        return Schedule(windows, self.source, timezone=default_zone)

    def parse(self) -> dict[str, Any]:
        try:
            return _toml_loads(self.text, self.source)
        except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError
            message = str(exc)
            position = _DECODE_POSITION.search(message)
            if position is None:
                raise self.error(f"invalid TOML: {message}", None) from None
            problem = message[: position.start()]
            if position[1] is None:
                raise self.error(
                    f"invalid TOML: {problem} (at end of file)", self.lines.last_line()
                ) from None
            raise self.error(
                f"invalid TOML: {problem} (column {position[2]})", int(position[1])
            ) from None
        except RecursionError:
            raise self.error("invalid TOML: nested too deeply", None) from None

    def field(self, parse: Callable[[object], T], value: object, line: int | None) -> T:
        try:
            return parse(value)
        except _Invalid as exc:
            raise self.error(str(exc), line) from None

    def window(self, index: int, raw: object, default_zone: ZoneInfo | None) -> Window:
        header = self.lines.window_line(index)

        def line_of(key: str) -> int | None:
            return self.lines.window_key(index, key) or header

        if not isinstance(raw, dict):
            raise self.error(f"each window must be a table, not {_kind(raw)}", header)
        for key in raw:
            if key not in _WINDOW_KEYS:
                problem = f"unknown key {key!r} in window{_suggest(key, _WINDOW_KEYS)}"
                expected = ", ".join(_WINDOW_KEYS)
                raise self.error(f"{problem}; a window has {expected}", line_of(key))
        name = f"window {index + 1}"
        label = name  # how messages name the window
        if "name" in raw:
            name = self.field(_parse_name, raw["name"], line_of("name"))
            label = f"window {name!r}"
        for key, example in _REQUIRED_WINDOW_KEYS.items():
            if key not in raw:
                raise self.error(f"{label} is missing {key!r} (e.g. {example})", header)
        days = self.field(_parse_days, raw["days"], line_of("days"))
        start = self.field(_parse_start, raw["start"], line_of("start"))
        end = self.field(_parse_end, raw["end"], line_of("end"))
        if end is not None and end <= start:
            raise self.error(
                f"end {_format_time(end)} is not after start {_format_time(start)}; a window "
                'ends on the day it starts (use end = "24:00" and a second window for '
                "overnight hours)",
                line_of("end"),
            )
        campaigns = self.field(_parse_campaigns, raw["campaigns"], line_of("campaigns"))
        zone = default_zone
        if "timezone" in raw:
            zone = self.field(_parse_zone, raw["timezone"], line_of("timezone"))
        if zone is None:
            raise self.error(
                f'{label} has no timezone; set timezone = "America/Denver" (say) at the top '
                "of the file or in this window",
                header,
            )
        return Window(name, days, start, end, campaigns, zone, header or 0)


_HEADER = re.compile(r"\s*\[(\[?)([^\[\]]*)\]")
_QUOTES_AND_SPACE = re.compile(r"[\s\"']")


class _SourceLines:
    """Finds the line of a key in TOML source, for error messages (best effort).

    tomllib returns plain values without positions, so the lines are found by
    scanning the text: ``[[window]]`` headers are counted to find a window's
    block, and a key is the first ``key =`` (or ``key.``) line in it.
    """

    def __init__(self, text: str) -> None:
        # TOML lines end in LF or CRLF only; str.splitlines would also split
        # on form feeds and other characters TOML keeps inside a line.
        self.lines = [line.rstrip("\r") for line in text.split("\n")]
        self.top_end = len(self.lines)  # index of the first table header
        self.blocks: list[tuple[int, int]] = []  # [start, stop) line indexes of [[window]]s
        current: int | None = None  # first line index of the block being read
        for number, line in enumerate(self.lines):
            header = _HEADER.match(line)
            if header is None:
                continue
            self.top_end = min(self.top_end, number)
            name = _QUOTES_AND_SPACE.sub("", header[2])
            opens_window = bool(header[1]) and name == "window"
            # [window.x] after [[window]] is a sub-table of that same window.
            if current is not None and (opens_window or not name.startswith("window.")):
                self.blocks.append((current, number))
                current = None
            if opens_window:
                current = number
        if current is not None:
            self.blocks.append((current, len(self.lines)))

    def _find(self, key: str, start: int, stop: int) -> int | None:
        pattern = re.compile(
            rf"\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*[=.]"
        )
        for number in range(start, stop):
            if pattern.match(self.lines[number]):
                return number + 1
        return None

    def top_key(self, key: str) -> int | None:
        """The line defining a top-level key: ``key = ...`` or a ``[key]`` header."""
        found = self._find(key, 0, self.top_end)
        if found is not None:
            return found
        for number, line in enumerate(self.lines):
            header = _HEADER.match(line)
            if header is not None:
                name = _QUOTES_AND_SPACE.sub("", header[2])
                if name == key or name.startswith(f"{key}."):
                    return number + 1
        return None

    def window_line(self, index: int) -> int | None:
        """The line of the window's ``[[window]]`` header (or of ``window =`` if inline)."""
        if len(self.blocks) > index:
            return self.blocks[index][0] + 1
        return self.top_key("window")

    def window_key(self, index: int, key: str) -> int | None:
        """The line of ``key`` inside the window's block, if it can be found."""
        if len(self.blocks) <= index:
            return None
        start, stop = self.blocks[index]
        found = self._find(key, start + 1, stop)
        if found is not None:
            return found
        # A sub-table header such as [window.start] defines the key too.
        for number in range(start + 1, stop):
            header = _HEADER.match(self.lines[number])
            if header is not None and _QUOTES_AND_SPACE.sub("", header[2]) == f"window.{key}":
                return number + 1
        return None

    def last_line(self) -> int:
        """The last line with content: where "end of document" errors point."""
        for number in range(len(self.lines), 0, -1):
            if self.lines[number - 1].strip():
                return number
        return 1


# Public names report their public module, where users import them from (as httpx's do).
for _public in (Schedule, ScheduleError):
    _public.__module__ = "convoso_async.schedule"
