"""The `convoso` command against the fake server on a loopback port."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import cli_command, cli_env, serving_cli

from convoso_async.cli import main
from convoso_async.testing import FakeConvoso, Fault


@pytest.fixture
def fake() -> FakeConvoso:
    return FakeConvoso(
        campaigns=[
            {"id": "111", "name": "Sales", "status": "Y"},
            {"id": "222", "name": "Service", "status": "N"},
            {"id": "333", "name": "Retention", "status": "Y"},
        ]
    )


@pytest.fixture
def server(fake: FakeConvoso, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with serving_cli(fake, monkeypatch) as url:
        yield url


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.mark.usefixtures("server")
def test_list_json_and_filters(capsys: pytest.CaptureFixture[str]) -> None:
    code, rows = run_json(capsys, "campaigns", "list")
    assert code == 0
    assert [row["id"] for row in rows] == ["111", "222", "333"]  # type: ignore[attr-defined]
    code, rows = run_json(capsys, "campaigns", "list", "--inactive")
    assert [row["id"] for row in rows] == ["222"]  # type: ignore[attr-defined]
    code, rows = run_json(capsys, "campaigns", "list", "--active")
    assert [row["status"] for row in rows] == ["active", "active"]  # type: ignore[attr-defined]


@pytest.mark.usefixtures("server")
def test_list_into_a_pipe_is_one_tab_separated_line_per_campaign(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["campaigns", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "111\tSales\tactive\t",
        "222\tService\tinactive\t",
        "333\tRetention\tactive\t",
    ]


@pytest.mark.usefixtures("server")
def test_activate_changes_state_and_exits_zero(
    fake: FakeConvoso, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(capsys, "campaigns", "activate", "222", "111", "222")
    assert code == 0
    assert report["ok"] is True  # type: ignore[index]
    assert sorted(report["succeeded"]) == ["111", "222"]  # type: ignore[index]
    assert fake.statuses() == {"111": "Y", "222": "Y", "333": "Y"}


@pytest.mark.usefixtures("server")
def test_failures_are_listed_with_reasons_and_exit_one(
    fake: FakeConvoso, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(capsys, "campaigns", "deactivate", "111", "404")
    assert code == 1
    assert report["succeeded"] == ["111"]  # type: ignore[index]
    failure = report["failed"]["404"]  # type: ignore[index]
    assert failure["error"] == "CampaignNotFoundError"
    assert "404" in failure["message"]
    assert fake.campaign_status("111") == "N"


@pytest.mark.usefixtures("server")
def test_table_output_lists_failures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["campaigns", "deactivate", "404"]) == 1
    out = capsys.readouterr().out
    assert "failed 404: CampaignNotFoundError" in out


@pytest.mark.usefixtures("server")
def test_dry_run_sends_no_status_request(
    fake: FakeConvoso, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run_json(capsys, "campaigns", "activate", "111", "222", "--dry-run")
    assert code == 0
    assert report["dry_run"] is True  # type: ignore[index]
    assert [p["id"] for p in report["planned"]] == ["111", "222"]  # type: ignore[index]
    assert [r.path for r in fake.requests] == ["/campaigns/search"]
    assert fake.campaign_status("222") == "N"


@pytest.mark.usefixtures("server")
def test_skip_unchanged_and_ids_from_file(
    fake: FakeConvoso, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("# campaigns to switch on\n111\n\n222  # service\n")
    code, report = run_json(
        capsys, "campaigns", "activate", "--from-file", str(ids), "--skip-unchanged"
    )
    assert code == 0
    assert report["skipped"] == ["111"]  # type: ignore[index]
    assert report["succeeded"] == ["222"]  # type: ignore[index]
    status_requests = [r for r in fake.requests if r.path == "/campaigns/status"]
    assert [r.campaign_id for r in status_requests] == ["222"]


@pytest.mark.usefixtures("server")
def test_retried_faults_still_succeed(
    fake: FakeConvoso, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.add_fault(Fault("status", status=503, times=2))
    code, report = run_json(capsys, "campaigns", "deactivate", "111", "--concurrency", "1")
    assert code == 0
    assert report["retries"] == 2  # type: ignore[index]


def test_token_file_is_read_and_env_token_not_needed(
    fake: FakeConvoso,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = tmp_path / "token"
    token.write_text(fake.TOKEN + "\n")
    monkeypatch.delenv("CONVOSO_AUTH_TOKEN", raising=False)
    with fake.serve_in_thread() as url:
        code = main(["campaigns", "list", "--json", "--token-file", str(token), "--base-url", url])
    assert code == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_wrong_token_is_a_clear_error_with_exit_three(
    fake: FakeConvoso, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVOSO_AUTH_TOKEN", "wrong-token-123")
    with fake.serve_in_thread() as url:
        code = main(["campaigns", "list", "--base-url", url])
    err = capsys.readouterr().err
    assert code == 3
    assert "AuthenticationError" in err
    assert "wrong-token-123" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["campaigns", "activate"], "no campaign ids given"),
        (["campaigns", "activate", "1", "--from-file", "/nonexistent/ids"], "cannot read"),
        (["campaigns", "list", "--token-file", "/nonexistent/token"], "cannot read token file"),
        (["campaigns", "list", "--base-url", "ftp://x"], "base_url must be an http(s) URL"),
        (["schedule", "apply", "/nonexistent.toml"], "nonexistent.toml"),
    ],
)
def test_bad_arguments_exit_two_with_a_message(
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CONVOSO_AUTH_TOKEN", "t")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_missing_token_exits_two(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CONVOSO_AUTH_TOKEN", raising=False)
    assert main(["campaigns", "list"]) == 2
    assert "CONVOSO_AUTH_TOKEN" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["campaigns", "activate", "1", "--concurrency", "0"],
        ["campaigns", "activate", "1", "--rate", "fast"],
        ["campaigns", "activate", "1", "--token", "abc"],
        ["campaigns", "frobnicate"],
        [],
    ],
)
def test_argparse_errors_exit_two(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "error" in capsys.readouterr().err


def test_console_script_runs_as_a_process(fake: FakeConvoso, tmp_path: Path) -> None:
    with fake.serve_in_thread() as url:
        done = subprocess.run(
            cli_command("campaigns", "deactivate", "333", "9", "--json"),
            env=cli_env(url),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["succeeded"] == ["333"]
    assert "Traceback" not in done.stderr
    assert fake.campaign_status("333") == "N"


def test_fake_server_command_serves_until_terminated() -> None:
    process = subprocess.Popen(
        cli_command("fake-server", "--port", "0", "--campaigns", "7", "--latency", "0.001,0.002"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.removeprefix("listening on ")
        env = {**os.environ, "CONVOSO_AUTH_TOKEN": FakeConvoso.TOKEN}
        listed = subprocess.run(
            cli_command("campaigns", "list", "--json", "--base-url", url),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert len(json.loads(listed.stdout)) == 7
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_demo_runs_end_to_end_and_verifies_the_server_state(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--campaigns", "300", "--latency", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "search: 300 campaigns" in out
    assert "deactivate all" in out
    assert "re-activate all" in out
    assert "999998" in out  # the unknown ids are reported with their reason
    assert "ok: every campaign accounted for" in out


def test_demo_off_a_terminal_prints_plain_unwrapped_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # capsys is no terminal: as in a pipe, a file or a cron mail.
    assert main(["demo", "--campaigns", "300", "--latency", "0.001"]) == 0
    captured = capsys.readouterr()
    assert not any(box in captured.out for box in "┃│┏━"), "tables drawn off a terminal"
    assert "━" not in captured.err, "a progress bar drawn off a terminal"
    phases = [line for line in captured.out.splitlines() if " ids, " in line]
    assert len(phases) == 2
    assert phases[0].startswith("deactivate all: 302 ids, 300 ok, 2 failed, ")
    verdict = [line for line in captured.out.splitlines() if line.startswith("ok: ")]
    assert len(verdict) == 1
    assert verdict[0].endswith(")"), "the verdict line was wrapped"


# -- convoso api: any endpoint ----------------------------------------------------------------


def test_api_prints_the_answer_on_one_line_into_a_pipe(
    fake: FakeConvoso, server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.add_endpoint("/leads/search")
    assert main(["api", "/leads/search", "list_id=5", "name=Zoë", "note=a=b"]) == 0
    out = capsys.readouterr().out
    assert out == (
        '{"success":true,"path":"/leads/search","fields":{"list_id":"5","name":"Zoë","note":"a=b"}}\n'
    )
    assert [r.form.get("auth_token") for r in fake.requests] == ["***"]


@pytest.mark.usefixtures("server")
def test_api_on_a_campaigns_endpoint_prints_what_convoso_answered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["api", "/campaigns/search"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in answer["data"]] == ["111", "222", "333"]


def test_api_success_false_exits_three_with_the_error(
    fake: FakeConvoso, server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.add_endpoint("/leads/insert", lambda fields: {"success": False, "error": "Bad", "code": 7})
    assert main(["api", "/leads/insert", "phone_number=5551234567"]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "convoso: error: APIError: Bad (Convoso code 7)\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["api", "leads/search"], "starting with one '/'"),
        (["api", "/leads/search?list_id=5"], "query"),
        (["api", "/leads/search", "list_id"], "field 1 is not KEY=VALUE"),
        (["api", "/leads/search", "a=1", "=x"], "field 2 is not KEY=VALUE"),
        (["api", "/leads/search", "auth_token=tok-typed-by-mistake"], "auth token"),
    ],
)
def test_api_bad_input_exits_two_before_anything_is_sent(
    argv: list[str],
    message: str,
    fake: FakeConvoso,
    server: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "tok-typed-by-mistake" not in err
    assert fake.requests == []


def test_api_retries_a_timeout_only_when_told_it_is_idempotent(
    fake: FakeConvoso, server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.add_endpoint("/leads/insert")
    fake.add_fault(Fault("slow", delay=1.5, path="/leads/insert", on_requests={1, 2}))
    argv = ["api", "/leads/insert", "phone_number=5551234567", "--timeout", "0.5"]
    assert main(argv) == 3  # timed out once, and not sent again
    assert "APITimeoutError" in capsys.readouterr().err
    assert main([*argv, "--idempotent"]) == 0  # timed out, then retried
    assert json.loads(capsys.readouterr().out)["fields"] == {"phone_number": "5551234567"}
    assert len(fake.requests) == 3
