"""The schedule model: reading files, wanted states, boundaries, and DST."""

from __future__ import annotations

import datetime as dt
import itertools
import pickle
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

from convoso_async._errors import ConfigurationError
from convoso_async.schedule import Schedule, ScheduleError, Window

UTC = dt.timezone.utc
DENVER = ZoneInfo("America/Denver")
BERLIN = ZoneInfo("Europe/Berlin")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "schedule.toml"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def local(
    zone: ZoneInfo,
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
    *,
    fold: int = 0,
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, microsecond, zone, fold=fold)


def toml(*lines: str) -> str:
    """A document whose line N is ``lines[N - 1]``, so tests can name lines."""
    return "\n".join(lines) + "\n"


def one_window(
    start: str, end: str, *, days: str = '"daily"', zone: str = "America/Denver"
) -> Schedule:
    return Schedule.from_toml(
        toml(
            f'timezone = "{zone}"',
            "[[window]]",
            f"days = {days}",
            f'start = "{start}"',
            f'end = "{end}"',
            'campaigns = ["1"]',
        )
    )


def walk(schedule: Schedule, start: dt.datetime, stop: dt.datetime) -> list[dt.datetime]:
    """Every boundary in (start, stop), by chaining next_boundary (bounded)."""
    found: list[dt.datetime] = []
    at: dt.datetime | None = start
    for _ in range(200):
        at = schedule.next_boundary(at) if at is not None else None
        if at is None or at >= stop:
            return found
        found.append(at)
    raise AssertionError("next_boundary did not advance")


def open_periods(
    schedule: Schedule, start: dt.datetime, stop: dt.datetime
) -> list[tuple[str, str]]:
    """The (from, to) UTC times in [start, stop) when campaign "1" is wanted active."""
    boundaries = walk(schedule, start, stop)
    periods = []
    for opened, closed in itertools.pairwise([start, *boundaries, stop]):
        if schedule.desired_states(opened)["1"]:
            periods.append((opened.strftime("%m-%d %H:%M"), closed.strftime("%m-%d %H:%M")))
    return periods


# --- the example file and plain weekly behaviour ---------------------------------


def test_example_file_loads_and_follows_the_reference_workflow() -> None:
    schedule = Schedule.load(EXAMPLE)
    assert schedule.source == str(EXAMPLE)
    assert schedule.campaign_ids == {"111", "333"}
    # Tuesday 2026-03-03, America/Denver (MST, UTC-7).
    assert schedule.desired_states(local(DENVER, 2026, 3, 3, 7, 59)) == {"111": False, "333": False}
    assert schedule.desired_states(local(DENVER, 2026, 3, 3, 8, 0)) == {"111": True, "333": False}
    assert schedule.desired_states(local(DENVER, 2026, 3, 3, 14, 0)) == {"111": True, "333": True}
    assert schedule.desired_states(local(DENVER, 2026, 3, 3, 17, 0)) == {"111": False, "333": False}
    # Saturday: only the morning sales shift; Sunday: nothing.
    assert schedule.desired_states(local(DENVER, 2026, 3, 7, 10, 0)) == {"111": True, "333": False}
    assert schedule.desired_states(local(DENVER, 2026, 3, 8, 10, 0)) == {"111": False, "333": False}
    assert schedule.next_boundary(local(DENVER, 2026, 3, 3, 9, 0)) == utc(2026, 3, 3, 21, 0)


def test_desired_states_is_the_same_instant_in_any_zone_it_is_given_in() -> None:
    schedule = Schedule.load(EXAMPLE)
    at = local(DENVER, 2026, 3, 3, 15, 30)
    expected = {"111": True, "333": True}
    assert schedule.desired_states(at) == expected
    assert schedule.desired_states(at.astimezone(UTC)) == expected
    assert schedule.desired_states(at.astimezone(ZoneInfo("Asia/Tokyo"))) == expected  # Wed there


def test_start_is_inside_and_end_is_outside() -> None:
    schedule = one_window("08:00", "17:00")
    assert not schedule.desired_states(local(DENVER, 2026, 3, 3, 7, 59, 59))["1"]
    assert schedule.desired_states(local(DENVER, 2026, 3, 3, 8, 0))["1"]
    assert schedule.desired_states(local(DENVER, 2026, 3, 3, 16, 59, 59, 999999))["1"]
    assert not schedule.desired_states(local(DENVER, 2026, 3, 3, 17, 0))["1"]


def test_overlapping_windows_are_a_union() -> None:
    schedule = Schedule.from_toml(
        toml(
            'timezone = "America/Denver"',
            "[[window]]",
            'days = "weekdays"',
            'start = "08:00"',
            'end = "12:00"',
            'campaigns = ["1", "2"]',
            "[[window]]",
            'days = "weekdays"',
            'start = "10:00"',
            'end = "15:00"',
            'campaigns = ["1"]',
        )
    )
    states = {
        hour: schedule.desired_states(local(DENVER, 2026, 3, 4, hour))
        for hour in (7, 9, 11, 13, 15)
    }
    assert states == {
        7: {"1": False, "2": False},
        9: {"1": True, "2": True},
        11: {"1": True, "2": True},
        13: {"1": True, "2": False},
        15: {"1": False, "2": False},
    }


def test_campaigns_in_no_window_are_absent_from_the_result() -> None:
    schedule = Schedule.load(EXAMPLE)
    states = schedule.desired_states(local(DENVER, 2026, 3, 3, 9, 0))
    assert "222" not in states
    assert set(states) == schedule.campaign_ids
    assert Schedule(()).desired_states(utc(2026, 3, 3)) == {}


def test_weekday_and_weekend_windows_follow_the_local_date() -> None:
    schedule = Schedule.from_toml(
        toml(
            'timezone = "America/Denver"',
            "[[window]]",
            'days = "weekdays"',
            'start = "00:00"',
            'end = "24:00"',
            "campaigns = [1]",
            "[[window]]",
            'days = "weekends"',
            'start = "00:00"',
            'end = "24:00"',
            "campaigns = [2]",
        )
    )
    friday_night = local(DENVER, 2026, 3, 6, 23, 30)  # already Saturday in UTC
    assert friday_night.astimezone(UTC).weekday() == 5
    assert schedule.desired_states(friday_night) == {"1": True, "2": False}
    assert schedule.desired_states(local(DENVER, 2026, 3, 7, 0, 0)) == {"1": False, "2": True}
    assert schedule.desired_states(local(DENVER, 2026, 3, 8, 23, 59)) == {"1": False, "2": True}
    assert schedule.desired_states(local(DENVER, 2026, 3, 9, 0, 0)) == {"1": True, "2": False}


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        ('"daily"', set(range(7))),
        ('"weekdays"', {0, 1, 2, 3, 4}),
        ('"WeekEnds"', {5, 6}),
        ('["mon", "Wednesday", "FRI"]', {0, 2, 4}),
        ('["weekends", "mon"]', {0, 5, 6}),
        ('"sun"', {6}),
    ],
)
def test_days_accept_names_groups_and_any_case(days: str, expected: set[int]) -> None:
    assert one_window("08:00", "09:00", days=days).windows[0].days == expected


def test_end_of_day_runs_until_local_midnight() -> None:
    schedule = one_window("22:00", "24:00", days='["fri"]')
    window = schedule.windows[0]
    assert window.end is None
    assert schedule.desired_states(local(DENVER, 2026, 3, 6, 23, 59, 59, 999999))["1"]
    assert not schedule.desired_states(local(DENVER, 2026, 3, 7, 0, 0))["1"]
    assert schedule.next_boundary(local(DENVER, 2026, 3, 6, 22, 0)) == utc(2026, 3, 7, 7, 0)


def test_windows_use_their_own_zone_or_the_default() -> None:
    schedule = Schedule.from_toml(
        toml(
            'timezone = "America/Denver"',
            "[[window]]",
            'days = "daily"',
            'start = "08:00"',
            'end = "09:00"',
            "campaigns = [1]",
            "[[window]]",
            'days = "daily"',
            'start = "08:00"',
            'end = "09:00"',
            "campaigns = [2]",
            'timezone = "Europe/Berlin"',
        )
    )
    assert [w.timezone_key for w in schedule.windows] == ["America/Denver", "Europe/Berlin"]
    assert schedule.desired_states(local(BERLIN, 2026, 3, 3, 8, 30)) == {"1": False, "2": True}
    assert schedule.desired_states(local(DENVER, 2026, 3, 3, 8, 30)) == {"1": True, "2": False}


def test_campaign_ids_are_strings_and_duplicates_collapse() -> None:
    schedule = Schedule.from_toml(
        toml(
            'timezone = "UTC"',
            "[[window]]",
            'days = "daily"',
            'start = "08:00"',
            'end = "09:00"',
            'campaigns = [111, "111", " 222 ", 0]',
        )
    )
    assert schedule.windows[0].campaigns == ("111", "222", "0")


def test_native_toml_times_and_seconds_are_accepted() -> None:
    schedule = Schedule.from_toml(
        toml(
            'timezone = "UTC"',
            "[[window]]",
            'days = "daily"',
            "start = 08:00:30",
            'end = "09:15:45"',
            "campaigns = [1]",
        )
    )
    window = schedule.windows[0]
    assert (window.start, window.end) == (dt.time(8, 0, 30), dt.time(9, 15, 45))
    assert window.line == 2
    assert schedule.describe() == ["window 1: daily 08:00:30-09:15:45 UTC: 1"]


def test_describe_prints_one_line_per_window() -> None:
    assert Schedule.load(EXAMPLE).describe() == [
        "sales hours: weekdays 08:00-17:00 America/Denver: 111",
        "retention afternoons: weekdays 14:00-17:00 America/Denver: 333",
        "saturday sales: Sat 09:00-13:00 America/Denver: 111",
    ]
    some_days = one_window("08:00", "24:00", days='["mon", "tue", "wed", "fri", "sun"]')
    assert some_days.describe() == ["window 1: Mon-Wed, Fri, Sun 08:00-24:00 America/Denver: 1"]
    assert Schedule((), "empty.toml").describe() == [
        "empty.toml: no windows; no campaign is scheduled"
    ]


def test_window_can_be_built_directly_and_rejects_nonsense() -> None:
    window = Window("w", frozenset({0}), dt.time(8), dt.time(9), ("1",), "Europe/Berlin")
    assert window.timezone is BERLIN
    assert window.timezone_key == "Europe/Berlin"
    with pytest.raises(ValueError, match="after start"):
        Window("w", frozenset({0}), dt.time(9), dt.time(8), ("1",), BERLIN)
    with pytest.raises(ValueError, match="days"):
        Window("w", frozenset({7}), dt.time(8), dt.time(9), ("1",), BERLIN)
    with pytest.raises(ValueError, match="campaign"):
        Window("w", frozenset({0}), dt.time(8), dt.time(9), (), BERLIN)


@pytest.mark.parametrize(
    "call",
    [
        lambda s, t: s.desired_states(t),
        lambda s, t: s.next_boundary(t),
        lambda s, t: s.windows[0].contains(t),
    ],
    ids=["desired_states", "next_boundary", "contains"],
)
def test_naive_datetimes_are_rejected(call: object) -> None:
    schedule = Schedule.load(EXAMPLE)
    with pytest.raises(ValueError, match="must be timezone-aware"):
        call(schedule, dt.datetime(2026, 3, 3, 9, 0))  # type: ignore[operator]


# --- daylight saving time ---------------------------------------------------------
# America/Denver: 2026-03-08 02:00 MST -> 03:00 MDT (09:00Z),
#                 2026-11-01 02:00 MDT -> 01:00 MST (08:00Z).
# Europe/Berlin:  2026-03-29 02:00 CET -> 03:00 CEST (01:00Z),
#                 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z).


def test_denver_spring_forward_window_starting_in_the_gap_opens_at_the_transition() -> None:
    schedule = one_window("02:30", "04:00")
    assert open_periods(schedule, utc(2026, 3, 8, 0), utc(2026, 3, 8, 12)) == [
        ("03-08 09:00", "03-08 10:00")  # 03:00-04:00 MDT: half an hour shorter
    ]


def test_denver_spring_forward_window_ending_in_the_gap_closes_at_the_transition() -> None:
    schedule = one_window("01:30", "02:30")
    assert open_periods(schedule, utc(2026, 3, 8, 0), utc(2026, 3, 8, 12)) == [
        ("03-08 08:30", "03-08 09:00")  # 01:30-01:59:59 MST
    ]


def test_denver_spring_forward_window_inside_the_gap_does_not_open() -> None:
    schedule = one_window("02:00", "02:45")
    assert open_periods(schedule, utc(2026, 3, 8, 0), utc(2026, 3, 8, 18)) == []
    assert open_periods(schedule, utc(2026, 3, 9, 0), utc(2026, 3, 9, 18)) == [
        ("03-09 08:00", "03-09 08:45")  # the next day it runs as usual (MDT)
    ]


def test_denver_fall_back_window_inside_the_repeated_hour_lasts_an_hour() -> None:
    schedule = one_window("01:00", "01:30")
    assert open_periods(schedule, utc(2026, 11, 1, 0), utc(2026, 11, 1, 12)) == [
        ("11-01 07:00", "11-01 07:30"),  # 01:00-01:30 MDT
        ("11-01 08:00", "11-01 08:30"),  # 01:00-01:30 MST, the same wall times again
    ]
    # Both occurrences of 01:15 are inside, by the wall clock.
    assert schedule.desired_states(local(DENVER, 2026, 11, 1, 1, 15, fold=0))["1"]
    assert schedule.desired_states(local(DENVER, 2026, 11, 1, 1, 15, fold=1))["1"]


def test_denver_fall_back_window_ending_in_the_repeated_hour_reopens_when_the_clock_goes_back() -> (
    None
):
    schedule = one_window("00:30", "01:30")
    assert open_periods(schedule, utc(2026, 11, 1, 0), utc(2026, 11, 1, 12)) == [
        ("11-01 06:30", "11-01 07:30"),  # 00:30-01:30 MDT
        ("11-01 08:00", "11-01 08:30"),  # clock back to 01:00 MST, inside again until 01:30
    ]


def test_denver_fall_back_window_starting_in_the_repeated_hour_pauses_at_the_clock_change() -> None:
    schedule = one_window("01:30", "03:00")
    assert open_periods(schedule, utc(2026, 11, 1, 0), utc(2026, 11, 1, 12)) == [
        ("11-01 07:30", "11-01 08:00"),  # 01:30-01:59 MDT, then the clock reads 01:00
        ("11-01 08:30", "11-01 10:00"),  # 01:30-03:00 MST
    ]


def test_denver_fall_back_window_spanning_the_repeated_hour_lasts_an_hour_longer() -> None:
    schedule = one_window("00:00", "06:00")
    assert open_periods(schedule, utc(2026, 11, 1, 0), utc(2026, 11, 1, 18)) == [
        ("11-01 06:00", "11-01 13:00")  # seven hours of real time
    ]


def test_berlin_spring_forward_gap() -> None:
    starts_in_gap = one_window("02:30", "05:00", zone="Europe/Berlin")
    assert open_periods(starts_in_gap, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12)) == [
        ("03-29 01:00", "03-29 03:00")  # 03:00-05:00 CEST
    ]
    ends_in_gap = one_window("01:00", "02:30", zone="Europe/Berlin")
    assert open_periods(ends_in_gap, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12)) == [
        ("03-29 00:00", "03-29 01:00")  # 01:00-01:59 CET
    ]
    inside_gap = one_window("02:00", "02:59", zone="Europe/Berlin")
    assert open_periods(inside_gap, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12)) == []


def test_berlin_fall_back_overlap() -> None:
    inside_overlap = one_window("02:00", "02:30", zone="Europe/Berlin")
    assert open_periods(inside_overlap, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12)) == [
        ("10-25 00:00", "10-25 00:30"),  # 02:00-02:30 CEST
        ("10-25 01:00", "10-25 01:30"),  # 02:00-02:30 CET
    ]
    ends_in_overlap = one_window("01:30", "02:30", zone="Europe/Berlin")
    assert open_periods(ends_in_overlap, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12)) == [
        ("10-24 23:30", "10-25 00:30"),  # 01:30-02:30 CEST
        ("10-25 01:00", "10-25 01:30"),  # back to 02:00 CET, inside until 02:30 CET
    ]
    assert not inside_overlap.desired_states(local(BERLIN, 2026, 10, 25, 2, 45, fold=0))["1"]
    assert inside_overlap.desired_states(local(BERLIN, 2026, 10, 25, 2, 15, fold=1))["1"]


def test_next_boundary_walk_across_the_denver_spring_forward_week() -> None:
    schedule = Schedule.from_toml(
        toml(
            'timezone = "America/Denver"',
            "[[window]]",
            'days = "weekdays"',
            'start = "08:00"',
            'end = "17:00"',
            'campaigns = ["111"]',
            "[[window]]",
            'days = "weekdays"',
            'start = "14:00"',
            'end = "17:00"',
            'campaigns = ["333"]',
            "[[window]]",
            'days = ["sun"]',
            'start = "01:30"',
            'end = "02:30"',
            'campaigns = ["444"]',
        )
    )
    assert walk(schedule, utc(2026, 3, 6, 0), utc(2026, 3, 11, 0)) == [
        utc(2026, 3, 6, 15, 0),  # Fri 08:00 MST
        utc(2026, 3, 6, 21, 0),  # Fri 14:00 MST
        utc(2026, 3, 7, 0, 0),  # Fri 17:00 MST: both windows close at once
        utc(2026, 3, 8, 8, 30),  # Sun 01:30 MST
        utc(2026, 3, 8, 9, 0),  # Sun 02:30 does not exist: closes at the jump to 03:00 MDT
        utc(2026, 3, 9, 14, 0),  # Mon 08:00 MDT, an hour earlier in UTC
        utc(2026, 3, 9, 20, 0),
        utc(2026, 3, 9, 23, 0),
        utc(2026, 3, 10, 14, 0),
        utc(2026, 3, 10, 20, 0),
        utc(2026, 3, 10, 23, 0),
    ]


def test_next_boundary_walk_across_the_berlin_fall_back_week() -> None:
    schedule = Schedule.from_toml(
        toml(
            'timezone = "Europe/Berlin"',
            "[[window]]",
            'days = "daily"',
            'start = "02:15"',
            'end = "02:45"',
            "campaigns = [1]",
            "[[window]]",
            'days = "weekdays"',
            'start = "09:00"',
            'end = "18:00"',
            "campaigns = [2]",
        )
    )
    assert walk(schedule, utc(2026, 10, 24, 0), utc(2026, 10, 27, 0)) == [
        utc(2026, 10, 24, 0, 15),  # Sat 02:15 CEST
        utc(2026, 10, 24, 0, 45),
        utc(2026, 10, 25, 0, 15),  # Sun 02:15 CEST, first time
        utc(2026, 10, 25, 0, 45),
        utc(2026, 10, 25, 1, 15),  # Sun 02:15 CET, second time round
        utc(2026, 10, 25, 1, 45),
        utc(2026, 10, 26, 1, 15),  # Mon, CET
        utc(2026, 10, 26, 1, 45),
        utc(2026, 10, 26, 8, 0),
        utc(2026, 10, 26, 17, 0),
    ]


def test_next_boundary_is_strictly_after_and_in_utc() -> None:
    schedule = Schedule.load(EXAMPLE)
    opening = utc(2026, 3, 3, 15, 0)  # Tue 08:00 MST
    assert schedule.next_boundary(opening - dt.timedelta(microseconds=1)) == opening
    following = schedule.next_boundary(opening)
    assert following == utc(2026, 3, 3, 21, 0)
    assert following is not None
    assert following.tzinfo is UTC


def test_next_boundary_spans_a_week_for_a_weekly_window() -> None:
    schedule = one_window("08:00", "09:00", days='["mon"]', zone="UTC")
    assert schedule.next_boundary(utc(2026, 3, 2, 9, 0)) == utc(2026, 3, 9, 8, 0)


def test_next_boundary_is_none_when_nothing_ever_changes() -> None:
    assert Schedule(()).next_boundary(utc(2026, 3, 8)) is None
    always = one_window("00:00", "24:00")  # open around the clock, DST or not
    assert always.next_boundary(utc(2026, 3, 7)) is None
    assert always.next_boundary(utc(2026, 10, 31)) is None


# Windows whose edges sit on and around the local DST transition times.
EDGE_WINDOWS = [
    ("00:00", "24:00", '["sun"]'),
    ("00:30", "01:30", '"daily"'),
    ("01:00", "01:30", '"daily"'),
    ("01:30", "03:00", '"daily"'),
    ("01:59", "02:01", '"daily"'),
    ("02:00", "02:30", '"daily"'),
    ("02:30", "04:00", '"daily"'),
    ("23:00", "24:00", '"daily"'),
    ("08:00", "17:00", '"weekdays"'),
]


@pytest.mark.parametrize(
    ("zone", "around"),
    [
        ("America/Denver", utc(2026, 3, 8, 9)),
        ("America/Denver", utc(2026, 11, 1, 8)),
        ("Europe/Berlin", utc(2026, 3, 29, 1)),
        ("Europe/Berlin", utc(2026, 10, 25, 1)),
        ("Australia/Lord_Howe", utc(2026, 4, 4, 15)),  # a half-hour shift
        ("America/Santiago", utc(2026, 9, 6, 4)),  # the gap is at midnight
    ],
)
@pytest.mark.parametrize(("start", "end", "days"), EDGE_WINDOWS)
def test_next_boundary_finds_exactly_the_changes_a_minute_by_minute_scan_sees(
    zone: str, around: dt.datetime, start: str, end: str, days: str
) -> None:
    schedule = one_window(start, end, days=days, zone=zone)
    window = schedule.windows[0]
    begin, stop = around - dt.timedelta(hours=30), around + dt.timedelta(hours=30)
    # Every edge and every offset change in these zones is on a whole minute.
    minutes = [
        begin + dt.timedelta(minutes=m) for m in range(int((stop - begin).total_seconds()) // 60)
    ]
    changes = [
        later
        for earlier, later in itertools.pairwise(minutes)
        if window.contains(earlier) != window.contains(later)
    ]
    assert walk(schedule, begin, minutes[-1] + dt.timedelta(seconds=1)) == changes


ZONES = ["America/Denver", "Europe/Berlin", "Australia/Lord_Howe", "America/Santiago", "UTC"]
DST_INSTANTS = [
    utc(2026, 3, 8, 9),
    utc(2026, 11, 1, 8),
    utc(2026, 3, 29, 1),
    utc(2026, 10, 25, 1),
    utc(2026, 4, 4, 15),
    utc(2026, 10, 3, 15, 30),
    utc(2026, 4, 5, 3),
    utc(2026, 9, 6, 4),
]


@st.composite
def window_specs(draw: st.DrawFn) -> Window:
    start = draw(st.integers(0, 24 * 60 - 1))
    end = draw(st.integers(start + 1, 24 * 60))
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    return Window(
        "w",
        days,
        dt.time(start // 60, start % 60),
        None if end == 24 * 60 else dt.time(end // 60, end % 60),
        (draw(st.sampled_from(["1", "2"])),),
        draw(st.sampled_from(ZONES)),
    )


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    windows=st.lists(window_specs(), min_size=1, max_size=3),
    near=st.sampled_from(DST_INSTANTS),
    offset=st.integers(-3 * 86400, 3 * 86400),
    fractions=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=8),
)
def test_states_hold_still_between_consecutive_boundaries(
    windows: list[Window], near: dt.datetime, offset: int, fractions: list[float]
) -> None:
    schedule = Schedule(tuple(windows))
    after = near + dt.timedelta(seconds=offset)
    boundary = schedule.next_boundary(after)
    if boundary is None:
        assert all(
            w.days == set(range(7)) and w.start == dt.time(0) and w.end is None for w in windows
        )
        return
    assert after < boundary <= after + dt.timedelta(days=8)
    before = [w.contains(after) for w in windows]
    span = boundary - after
    just_before = boundary - dt.timedelta(microseconds=1)
    # timedelta * float rounds to the microsecond, so a fraction near 1 can land on the boundary.
    samples = [min(after + span * f, just_before) for f in fractions] + [just_before]
    for sample in samples:
        assert [w.contains(sample) for w in windows] == before
        assert schedule.desired_states(sample) == schedule.desired_states(after)
    assert [w.contains(boundary) for w in windows] != before


# --- errors name the file and line ------------------------------------------------


VALID_WINDOW = [
    "[[window]]",
    'name = "sales"',
    'days = "weekdays"',
    'start = "08:00"',
    'end = "17:00"',
    'campaigns = ["111"]',
]


def second_window(*extra: str, **values: str | None) -> str:
    """A valid window on lines 1-7, then a second one with its lines fixed.

    Line 8 is ``[[window]]``, 9 ``days``, 10 ``start``, 11 ``end``, 12
    ``campaigns``, then any other keyword values and ``extra`` lines. A value
    is the TOML right-hand side; None leaves the key out (its line stays blank).
    """
    fields: dict[str, str | None] = {
        "days": '"daily"',
        "start": '"08:00"',
        "end": '"09:00"',
        "campaigns": "[1]",
    }
    fields.update(values)
    body = ["" if value is None else f"{key} = {value}" for key, value in fields.items()]
    return toml('timezone = "America/Denver"', *VALID_WINDOW, "[[window]]", *body, *extra)


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        pytest.param(
            toml('timezone = "America/Denverr"'),
            1,
            "unknown time zone 'America/Denverr' (did you mean 'America/Denver'?)",
            id="unknown-default-zone",
        ),
        pytest.param(
            second_window(timezone='"Mars/Olympus"'),
            13,
            "unknown time zone 'Mars/Olympus'",
            id="unknown-window-zone",
        ),
        pytest.param(
            second_window(start='"8am"'), 10, "start '8am' is not a time of day", id="bad-time"
        ),
        pytest.param(
            second_window(start='"08:60"'),
            10,
            "start '08:60' is not a time of day",
            id="minute-out-of-range",
        ),
        pytest.param(
            second_window(start='"24:00"', end='"24:00"'),
            10,
            "start cannot be 24:00",
            id="start-at-end-of-day",
        ),
        pytest.param(
            second_window(end='"25:00"'),
            11,
            "end '25:00' is not a time of day; it must be 00:00 to 24:00",
            id="hour-out-of-range",
        ),
        pytest.param(
            second_window(start='"17:00"', end='"08:00"'),
            11,
            "end 08:00 is not after start 17:00",
            id="end-before-start",
        ),
        pytest.param(
            second_window(start='"08:00"', end='"08:00"'),
            11,
            "end 08:00 is not after start 08:00",
            id="end-equals-start",
        ),
        pytest.param(
            second_window(days='["mon", "fryday"]'),
            9,
            "unknown day 'fryday' (did you mean 'friday'?)",
            id="unknown-day",
        ),
        pytest.param(second_window(days="[]"), 9, "days is empty", id="no-days"),
        pytest.param(
            second_window(days="5"),
            9,
            'days must be day names such as "mon", not an integer',
            id="days-wrong-type",
        ),
        pytest.param(second_window(campaigns="[]"), 12, "campaigns is empty", id="no-campaigns"),
        pytest.param(
            second_window('name = "evening"', campaigns=None),
            8,
            "window 'evening' is missing 'campaigns' (e.g. campaigns = [\"111\"])",
            id="missing-campaigns",
        ),
        pytest.param(
            second_window(start=None), 8, "window 2 is missing 'start'", id="missing-start"
        ),
        pytest.param(
            second_window(campaigns='"111"'),
            12,
            'campaigns must be an array such as ["111", "222"], not a string',
            id="campaigns-not-an-array",
        ),
        pytest.param(
            second_window(campaigns="[1, true]"),
            12,
            "campaign ids must be non-empty strings or integers, not True",
            id="campaign-bool",
        ),
        pytest.param(
            second_window(campaigns='["1", " "]'),
            12,
            "campaign ids must be non-empty strings or integers, not ' '",
            id="campaign-blank",
        ),
        pytest.param(
            second_window(start="8"),
            10,
            'start must be a time of day such as "08:00", not an integer',
            id="start-wrong-type",
        ),
        pytest.param(
            second_window("name = 3"),
            13,
            "name must be a string, not an integer",
            id="name-wrong-type",
        ),
        pytest.param(
            second_window(start=None, strat='"08:00"'),
            13,
            "unknown key 'strat' in window (did you mean 'start'?)",
            id="typo-in-key",
        ),
        pytest.param(
            second_window("[window.extra]", "x = 1"),
            13,
            "unknown key 'extra' in window",
            id="unknown-sub-table",
        ),
        pytest.param(
            toml('timezone = "UTC"', 'windws = "x"'),
            2,
            "unknown top-level key 'windws' (did you mean 'window'?)",
            id="unknown-top-level-key",
        ),
        pytest.param(
            toml('timezone = "UTC"', 'start = "08:00"'),
            2,
            "unknown top-level key 'start' (window settings go inside a [[window]] block)",
            id="window-key-at-top-level",
        ),
        pytest.param(
            toml('timezone = "UTC"', "", "[window]", 'days = "daily"'),
            3,
            "each window must be a [[window]] block (double brackets)",
            id="single-brackets",
        ),
        pytest.param(
            toml("timezone = 7"),
            1,
            'timezone must be a name such as "America/Denver", not an integer',
            id="zone-wrong-type",
        ),
        pytest.param(
            toml(*VALID_WINDOW),
            1,
            "window 'sales' has no timezone",
            id="no-zone-anywhere",
        ),
        pytest.param(
            toml('timezone = "UTC"', "window = [1, 2]"),
            2,
            "each window must be a table, not an integer",
            id="window-not-a-table",
        ),
        pytest.param(
            toml(
                'timezone = "UTC"',
                "window = [",
                '  {days = "daily", start = "08:00", end = "07:00", campaigns = [1]},',
                "]",
            ),
            2,  # inline tables: the best line available is where `window` starts
            "end 07:00 is not after start 08:00",
            id="inline-window",
        ),
        pytest.param(
            toml('timezone = "UTC"', "[[window]]", 'start = "08:00"', "days = daily"),
            4,
            "invalid TOML: Invalid value (column 8)",
            id="toml-syntax",
        ),
        pytest.param(
            toml('timezone = "UTC"', "[[window]]", 'start = "08:00"', 'start = "09:00"'),
            4,
            "invalid TOML: Cannot overwrite a value",
            id="toml-duplicate-key",
        ),
        pytest.param(
            toml('timezone = "UTC"', "[[window]]", 'name = """never closed', "", ""),
            3,
            "invalid TOML: Unterminated string (at end of file)",
            id="toml-unterminated",
        ),
    ],
)
def test_every_problem_names_the_source_line(text: str, line: int, problem: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule.from_toml(text, source="shifts.toml")
    error = caught.value
    assert error.source == "shifts.toml"
    assert error.line == line, error
    assert problem in error.problem
    assert str(error) == f"shifts.toml:{line}: {error.problem}"


def test_schedule_error_is_a_configuration_error_and_survives_pickling() -> None:
    error = ScheduleError("unknown time zone 'X'", source="shifts.toml", line=7)
    assert isinstance(error, ConfigurationError)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.source, copy.line, copy.problem) == (
        "shifts.toml:7: unknown time zone 'X'",
        "shifts.toml",
        7,
        "unknown time zone 'X'",
    )


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ScheduleError) as caught:
        Schedule.load(path)
    assert caught.value.line is None
    assert str(caught.value) == f"{path}: cannot read schedule file: No such file or directory"


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "shifts.toml"
    path.write_text(second_window(timezone='"Denver"'))
    with pytest.raises(ScheduleError, match=r"shifts\.toml:13: unknown time zone 'Denver'"):
        Schedule.load(str(path))


def test_non_utf8_file_is_a_schedule_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'timezone = "UTC"\nname = "caf\xe9"\n')
    with pytest.raises(ScheduleError, match=r"latin1\.toml:2: the file is not UTF-8 text"):
        Schedule.load(path)


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + EXAMPLE.read_bytes())
    assert Schedule.load(path).campaign_ids == {"111", "333"}


def test_without_a_toml_parser_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes `import` raise ModuleNotFoundError, as on a bare 3.10.
    monkeypatch.setitem(sys.modules, "tomllib", None)
    monkeypatch.setitem(sys.modules, "tomli", None)
    with pytest.raises(ScheduleError, match=r"shifts\.toml: .*Python 3\.11\+.*pip install tomli"):
        Schedule.from_toml('timezone = "UTC"', source="shifts.toml")
