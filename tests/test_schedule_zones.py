"""Zone names in schedule files that look like a region's local time but are not."""

from __future__ import annotations

from pathlib import Path

import pytest

from convoso_async import ScheduleError
from convoso_async.cli import main
from convoso_async.schedule import Schedule

WINDOW = '[[window]]\ndays = "daily"\nstart = "08:00"\nend = "17:00"\ncampaigns = ["111"]\n'


@pytest.mark.parametrize(
    ("zone", "meant", "why"),
    [
        ("EST", "America/New_York", "a fixed UTC offset all year, with no daylight saving"),
        ("MST", "America/Denver", "a fixed UTC offset all year, with no daylight saving"),
        ("HST", "Pacific/Honolulu", "a fixed UTC offset all year, with no daylight saving"),
        ("est", "America/New_York", "a fixed UTC offset all year, with no daylight saving"),
        ("EST5EDT", "America/New_York", "a legacy name IANA keeps only for backward compat"),
        ("PST8PDT", "America/Los_Angeles", "a legacy name IANA keeps only for backward compat"),
        ("CET", "Europe/Paris", "a legacy name IANA keeps only for backward compat"),
        ("PST", "America/Los_Angeles", "an abbreviation, not a time zone name"),
        ("CDT", "America/Chicago", "an abbreviation, not a time zone name"),
    ],
)
def test_zone_names_that_mislead_are_refused_naming_the_zone_to_use(
    zone: str, meant: str, why: str
) -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule.from_toml(f'timezone = "{zone}"\n' + WINDOW, source="shifts.toml")
    message = str(caught.value)
    assert message.startswith(f"shifts.toml:1: time zone {zone!r} is {why}")
    assert f"use a location name such as {meant!r} (which follows daylight saving)" in message


def test_a_window_zone_is_checked_the_same_way() -> None:
    with pytest.raises(ScheduleError, match=r"shifts.toml:6: time zone 'EST' is a fixed UTC"):
        Schedule.from_toml(WINDOW + 'timezone = "EST"\n', source="shifts.toml")


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Etc/GMT+5", "Europe/Berlin"])
def test_location_names_and_explicit_fixed_offsets_are_accepted(zone: str) -> None:
    schedule = Schedule.from_toml(f'timezone = "{zone}"\n' + WINDOW)
    assert schedule.zone is not None
    assert str(schedule.zone) == zone


def test_the_cli_refuses_est_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shifts = tmp_path / "shifts.toml"
    shifts.write_text('timezone = "EST"\n' + WINDOW)
    monkeypatch.setenv("CONVOSO_AUTH_TOKEN", "t")
    assert main(["schedule", "apply", str(shifts), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "shifts.toml:1: time zone 'EST' is a fixed UTC offset" in err
    assert "Traceback" not in err
