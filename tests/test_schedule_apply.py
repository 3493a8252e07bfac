"""Reconciling a schedule against the fake server: idempotent, only what differs."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cli_runner import cli_command, cli_env

from convoso_async import AsyncConvoso
from convoso_async.cli import main
from convoso_async.cli._schedule import reconcile
from convoso_async.schedule import Schedule
from convoso_async.testing import FakeConvoso

EXAMPLE = Path(__file__).parent.parent / "examples" / "schedule.toml"
# Monday 2026-03-09, 09:00 in Denver (MDT, UTC-6 since the 8th): sales hours only.
MONDAY_9AM = dt.datetime(2026, 3, 9, 15, 0, tzinfo=dt.timezone.utc)
# Monday 2026-03-09, 15:00 in Denver: sales and retention.
MONDAY_3PM = dt.datetime(2026, 3, 9, 21, 0, tzinfo=dt.timezone.utc)


def reference_fake() -> FakeConvoso:
    return FakeConvoso(
        campaigns=[
            {"id": "111", "name": "Sales Campaign", "status": "N"},
            {"id": "222", "name": "Customer Service", "status": "N"},
            {"id": "333", "name": "Retention Campaign", "status": "Y"},
        ]
    )


def status_requests(fake: FakeConvoso) -> list[tuple[str | None, str]]:
    return [
        (r.campaign_id, r.form.get("status", ""))
        for r in fake.requests
        if r.path == "/campaigns/status"
    ]


@pytest.mark.anyio
async def test_apply_changes_only_what_differs_and_a_second_apply_sends_nothing() -> None:
    fake = reference_fake()
    schedule = Schedule.load(EXAMPLE)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        first = await reconcile(convoso, schedule, MONDAY_9AM)
        assert first.ok
        assert sorted(first.succeeded) == ["111", "333"]  # 111 on, 333 off (before 2 PM)
        assert sorted(status_requests(fake)) == [("111", "true"), ("333", "false")]
        assert fake.statuses() == {"111": "Y", "222": "N", "333": "N"}

        fake.reset_requests()
        second = await reconcile(convoso, schedule, MONDAY_9AM)
        assert second.ok
        assert second.succeeded == ()
        assert sorted(second.skipped) == ["111", "333"]
        assert [r.path for r in fake.requests] == ["/campaigns/search"]

        fake.reset_requests()
        later = await reconcile(convoso, schedule, MONDAY_3PM)
        assert later.succeeded == ("333",)
        assert status_requests(fake) == [("333", "true")]
    # 222 is in no window: never touched.
    assert fake.campaign_status("222") == "N"


@pytest.mark.anyio
async def test_apply_dry_run_reports_the_plan_and_sends_no_status() -> None:
    fake = reference_fake()
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        plan = await reconcile(convoso, Schedule.load(EXAMPLE), MONDAY_9AM, dry_run=True)
    assert plan.dry_run
    assert sorted(plan.planned) == ["111", "333"]
    assert status_requests(fake) == []
    assert fake.statuses()["111"] == "N"


def test_cli_schedule_apply_at_time_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = reference_fake()
    with fake.serve_in_thread() as url:
        monkeypatch.setenv("CONVOSO_AUTH_TOKEN", fake.TOKEN)
        argv = ["schedule", "apply", str(EXAMPLE), "--at", "2026-03-09T09:00-06:00"]
        assert main([*argv, "--base-url", url, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert sorted(report["succeeded"]) == ["111", "333"]
        assert main([*argv, "--base-url", url, "--json"]) == 0
        again = json.loads(capsys.readouterr().out)
    assert again["succeeded"] == []
    assert sorted(again["skipped"]) == ["111", "333"]


def test_cli_schedule_apply_rejects_a_time_that_is_not_iso(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVOSO_AUTH_TOKEN", "t")
    assert main(["schedule", "apply", str(EXAMPLE), "--at", "yesterday"]) == 2
    assert "--at must be an ISO time" in capsys.readouterr().err


@pytest.mark.parametrize("at", ["2026-03-09T09:00", "2026-03-09T15:00Z", "2026-03-09T09:00-06:00"])
def test_cli_at_without_offset_is_read_in_the_schedules_zone_and_printed_there(
    at: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = reference_fake()
    with fake.serve_in_thread() as url:
        monkeypatch.setenv("CONVOSO_AUTH_TOKEN", fake.TOKEN)
        code = main(["schedule", "apply", str(EXAMPLE), "--at", at, "--base-url", url])
    out = capsys.readouterr().out
    assert code == 0
    # 09:00 on Monday in Denver (MDT since the 8th): sales hours, not yet retention.
    assert fake.statuses() == {"111": "Y", "222": "N", "333": "N"}
    assert "schedule at 2026-03-09T09:00:00-06:00: 2 campaigns: 2 succeeded" in out


def test_cli_at_without_offset_needs_one_when_windows_use_several_zones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    two_zones = tmp_path / "two.toml"
    two_zones.write_text(
        '[[window]]\ndays = "daily"\nstart = "08:00"\nend = "17:00"\ncampaigns = ["1"]\n'
        'timezone = "America/Denver"\n'
        '[[window]]\ndays = "daily"\nstart = "08:00"\nend = "17:00"\ncampaigns = ["2"]\n'
        'timezone = "Europe/Berlin"\n'
    )
    monkeypatch.setenv("CONVOSO_AUTH_TOKEN", "t")
    assert main(["schedule", "apply", str(two_zones), "--at", "2026-03-09T09:00"]) == 2
    assert "several time zones; add one (e.g. 2026-03-09T09:00-07:00)" in capsys.readouterr().err


def test_cli_invalid_schedule_names_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "shifts.toml"
    bad.write_text(
        '[[window]]\ndays = "weekdays"\nstart = "08:00"\nend = "07:00"\n'
        'campaigns = ["1"]\ntimezone = "America/Denver"\n'
    )
    monkeypatch.setenv("CONVOSO_AUTH_TOKEN", "t")
    assert main(["schedule", "apply", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "shifts.toml:4:" in err
    assert "Traceback" not in err


def test_schedule_run_reconciles_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    fake = reference_fake()
    schedule = tmp_path / "always.toml"
    # Two half-day windows: always active, yet with boundaries to wait for.
    schedule.write_text(
        'timezone = "America/Denver"\n'
        '[[window]]\ndays = "daily"\nstart = "00:00"\nend = "12:00"\ncampaigns = ["111", "222"]\n'
        '[[window]]\ndays = "daily"\nstart = "12:00"\nend = "24:00"\ncampaigns = ["111", "222"]\n'
    )
    with fake.serve_in_thread() as url:
        process = subprocess.Popen(
            cli_command("schedule", "run", str(schedule)),
            env=cli_env(url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Signalled once the first step is over (its report and "next boundary" are out,
            # flushed), not after a sleep that a loaded machine can outlast. A child that dies
            # first ends the loop at end of file; one that hangs meets pytest-timeout.
            assert process.stdout is not None
            out = ""
            for line in process.stdout:
                out += line
                if line.startswith("next boundary"):
                    break
            process.send_signal(signal.SIGTERM)
            rest, err = process.communicate(timeout=30)
            out += rest
        finally:
            process.kill()
    assert process.returncode == 0, err
    assert fake.statuses() == {"111": "Y", "222": "Y", "333": "Y"}
    assert "SIGTERM: stopping" in err
    assert "campaign=222 wanted=active outcome=succeeded" in err
    assert "Traceback" not in err
    # Times are printed on the schedule's wall clock, with Denver's offset at that instant.
    (boundary_line,) = [line for line in out.splitlines() if line.startswith("next boundary ")]
    boundary = dt.datetime.fromisoformat(boundary_line.removeprefix("next boundary "))
    denver = ZoneInfo("America/Denver")
    assert boundary.utcoffset() == denver.utcoffset(boundary.replace(tzinfo=None))
    assert boundary.time() in (dt.time(0), dt.time(12))
    (report_line,) = [line for line in out.splitlines() if line.startswith("schedule at ")]
    at = dt.datetime.fromisoformat(report_line.split(" ")[2].rstrip(":"))
    assert at.utcoffset() == denver.utcoffset(at.replace(tzinfo=None))
