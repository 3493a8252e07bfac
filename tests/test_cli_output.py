"""The `convoso` command where users run it: terminals, pipes, files, cron.

Terminal runs get a real pseudo-terminal (``pty``) as stdout, so rich sees a
tty exactly as it would in a shell; pipe runs read through a real pipe and
close it early, as ``| head`` does; cron runs get a minimal environment (no
TERM, no tty, ``LANG=C``) with stdout redirected to a file.
"""

from __future__ import annotations

import argparse
import codecs
import fcntl
import io
import json
import os
import pty
import socket
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import cli_command, cli_env, serving_cli

import convoso_async
from convoso_async import BatchResult
from convoso_async.cli import main
from convoso_async.cli._main import build_parser
from convoso_async.cli._output import print_result
from convoso_async.testing import FakeConvoso

#: Upper bound on one command run as a process; a run takes well under a second.
RUN_TIMEOUT = 60.0
#: Columns of the pseudo-terminal: narrower than a failure line, to show it is not wrapped there.
TERMINAL_COLUMNS = 100


@pytest.fixture
def fake() -> FakeConvoso:
    """Generated campaigns with the reference's ids: 111 and 222 active, 333 inactive."""
    return FakeConvoso(campaign_ids=["111", "222", "333"])


@pytest.fixture
def url(fake: FakeConvoso, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with serving_cli(fake, monkeypatch) as base_url:
        yield base_url


def run_on_terminal(
    argv: list[str], env: dict[str, str], encoding: str = "utf-8"
) -> tuple[int, str]:
    """Run with a pseudo-terminal as stdout; return the exit code and what the terminal showed
    (read in ``encoding``)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, TERMINAL_COLUMNS, 0, 0))
    process = subprocess.Popen(
        argv, stdout=terminal, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
    )
    os.close(terminal)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process closed its side
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert process.wait(timeout=RUN_TIMEOUT) is not None
    return process.returncode, shown.decode(encoding)


# -- terminal or not --------------------------------------------------------------------------


def test_a_terminal_gets_a_table_with_a_singular_title(fake: FakeConvoso, url: str) -> None:
    env = {**cli_env(url), "TERM": "xterm-256color"}
    env.pop("COLUMNS", None)
    code, shown = run_on_terminal(cli_command("campaigns", "list", "--inactive"), env)
    assert code == 0
    assert "1 campaign\r\n" in shown or "1 campaign " in shown
    assert "1 campaigns" not in shown
    assert "┃" in shown or "│" in shown  # box drawing: a table, for people
    assert "333" in shown
    assert "inactive" in shown


def test_api_on_a_terminal_prints_indented_json(url: str) -> None:
    code, shown = run_on_terminal(cli_command("api", "/campaigns/search"), cli_env(url))
    assert code == 0, shown
    assert shown.startswith('{\r\n  "data": [\r\n    {\r\n      "id": "111",')


@pytest.mark.parametrize("argv", [["--help"], ["api", "--help"], ["campaigns", "list", "--help"]])
def test_help_loads_no_http_library(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from convoso_async.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'httpx2', 'httpcore2', 'httpx', 'httpcore', 'aiohttp', 'anyio', 'rich'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    assert "usage: convoso" in done.stdout
    assert done.stderr.strip() == "[]"


def test_a_terminal_shows_names_as_they_are_never_as_markup() -> None:
    odd = FakeConvoso(campaigns=[{"id": "7", "name": "Sales [West] [/] [bold]x", "status": "Y"}])
    with odd.serve_in_thread() as url:
        env = {**cli_env(url), "TERM": "xterm-256color"}
        code, shown = run_on_terminal(cli_command("campaigns", "list"), env)
    assert code == 0, shown
    assert "Sales [West] [/] [bold]x" in shown


def test_a_terminal_shows_each_failure_whole(fake: FakeConvoso, url: str) -> None:
    long_id = "9" * 60
    env = {**cli_env(url), "TERM": "xterm-256color"}
    code, shown = run_on_terminal(cli_command("campaigns", "deactivate", "111", long_id), env)
    assert code == 1
    assert f"{long_id}: CampaignNotFoundError: campaign '{long_id}' does not exist" in shown


@pytest.mark.usefixtures("url")
def test_into_a_pipe_each_failure_is_one_whole_line_in_numeric_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    long_id = "7" * 90  # the message is far wider than 80 columns
    assert main(["campaigns", "deactivate", "111", "100", long_id, "9", "10", "1"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("deactivate: 6 campaigns: 1 succeeded, 5 failed, 0 skipped, ")
    failures = [line for line in lines if line.startswith("failed ")]
    assert [line.split(":")[0] for line in failures] == [
        "failed 1",
        "failed 9",
        "failed 10",
        "failed 100",
        f"failed {long_id}",
    ]
    assert failures[-1] == (
        f"failed {long_id}: CampaignNotFoundError: campaign '{long_id}' does not exist "
        "(Convoso code 6026)"
    )
    assert len(lines) == 1 + len(failures)
    assert not any(char in "".join(lines) for char in "┃│━─")


@pytest.mark.usefixtures("url")
def test_one_campaign_is_singular(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["campaigns", "activate", "222"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "activate: 1 campaign: 1 succeeded, 0 failed, 0 skipped, 0 not sent, 0 unknown, 0 retries, "
    )
    assert main(["campaigns", "activate", "222", "333", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (
        "activate (dry run): 2 campaigns: 2 would be sent (1 would change), 0 failed, 0 skipped"
    )
    assert "would activate 222" in out.splitlines()


@pytest.mark.parametrize("options", [[], ["--skip-unchanged"], ["--dry-run"]])
@pytest.mark.usefixtures("url")
def test_an_unknown_id_is_reported_under_the_public_error_name(
    options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["campaigns", "deactivate", "404", *options, "--json"]) == 1
    failure = json.loads(capsys.readouterr().out)["failed"]["404"]
    assert failure["error"] == "CampaignNotFoundError"
    assert main(["campaigns", "deactivate", "404", *options]) == 1
    out = capsys.readouterr().out
    assert "failed 404: CampaignNotFoundError: " in out
    assert "_Local" not in out


# -- pipes closed early, files, cron ---------------------------------------------------------


@pytest.mark.parametrize("json_flag", [["--json"], []])
def test_a_reader_that_stops_early_gets_no_traceback(json_flag: list[str]) -> None:
    # Far more output than a pipe buffers (64 KiB), so writing meets the closed pipe.
    fake = FakeConvoso(campaigns=3000)
    with fake.serve_in_thread() as url:
        process = subprocess.Popen(
            cli_command("campaigns", "list", *json_flag),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(url),
        )
        assert process.stdout is not None
        assert process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()  # what `| head -1` does once it has its line
        err = process.stderr.read().decode()
        code = process.wait(timeout=RUN_TIMEOUT)
    assert first.strip()
    assert err == ""
    assert code == 141  # 128 + SIGPIPE, what a shell reports for `cat` in the same place


def test_head_in_a_shell_pipeline(tmp_path: Path) -> None:
    fake = FakeConvoso(campaigns=3000)
    with fake.serve_in_thread() as url:
        done = subprocess.run(
            ["sh", "-c", f"{' '.join(cli_command('campaigns', 'list'))} | head -3"],
            capture_output=True,
            text=True,
            env=cli_env(url),
            timeout=RUN_TIMEOUT,
            check=False,
        )
    assert done.returncode == 0
    assert [line.split("\t")[0] for line in done.stdout.splitlines()] == ["1001", "1002", "1003"]
    assert done.stderr == ""


def test_under_cron_output_to_a_file_is_plain_utf8_lines(tmp_path: Path) -> None:
    fake = FakeConvoso(campaigns=12)  # the tenth is "Renovación ..."
    log = tmp_path / "cron.log"
    with fake.serve_in_thread() as url:
        cron_env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C",
            "HOME": str(tmp_path),
            "CONVOSO_AUTH_TOKEN": fake.TOKEN,
            "CONVOSO_BASE_URL": url,
        }
        with log.open("wb") as out:
            done = subprocess.run(
                cli_command("campaigns", "deactivate", "1001", "1002", "404"),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.PIPE,
                env=cron_env,
                timeout=RUN_TIMEOUT,
                check=False,
            )
            listed = subprocess.run(
                cli_command("campaigns", "list"),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.PIPE,
                env=cron_env,
                timeout=RUN_TIMEOUT,
                check=False,
            )
    assert done.returncode == 1, done.stderr
    assert listed.returncode == 0, listed.stderr
    lines = log.read_bytes().decode("utf-8").splitlines()
    assert lines[0].startswith("deactivate: 3 campaigns: 2 succeeded, 1 failed, 0 skipped, ")
    assert (
        lines[1]
        == "failed 404: CampaignNotFoundError: campaign '404' does not exist (Convoso code 6026)"
    )
    rows = [line.split("\t") for line in lines[2:]]
    assert len(rows) == 12
    assert [row[2] for row in rows[:3]] == ["inactive", "inactive", "inactive"]
    assert rows[9][1].startswith("Renovación ")
    assert "\x1b[" not in log.read_text(encoding="utf-8")  # no colour codes in a file


# -- id files as spreadsheets save them ------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-16-le", codecs.BOM_UTF16_LE),  # Excel's "Unicode Text"
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-8", codecs.BOM_UTF8),  # Excel's "CSV UTF-8"
        ("utf-32-le", codecs.BOM_UTF32_LE),
        ("utf-8", b""),
    ],
)
@pytest.mark.usefixtures("url")
def test_id_files_in_utf16_or_with_a_bom_are_read(
    encoding: str, bom: bytes, tmp_path: Path, fake: FakeConvoso, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_bytes(bom + "111\r\n333\r\n".encode(encoding))
    assert main(["campaigns", "deactivate", "--from-file", str(ids), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["succeeded"] == ["111", "333"]
    assert fake.statuses() == {"111": "N", "222": "Y", "333": "N"}


def test_json_lists_the_ids_in_the_order_given_not_in_the_order_requests_ended(
    capsys: pytest.CaptureFixture[str],
) -> None:
    refused = RuntimeError("refused")
    result = BatchResult(
        targets=dict.fromkeys(["10", "3", "7", "1", "9", "4", "8", "2", "6", "5"], False),
        succeeded=("7", "10"),
        failed={"1": refused, "3": refused},
        skipped=("4", "9"),
        not_sent={"2": refused, "8": refused},
        unknown=("5", "6"),
    )
    print_result(result, as_json=True, title="deactivate")
    document = json.loads(capsys.readouterr().out)
    assert document["succeeded"] == ["10", "7"]
    assert list(document["failed"]) == ["3", "1"]
    assert document["skipped"] == ["9", "4"]
    assert list(document["not_sent"]) == ["8", "2"]
    assert document["unknown"] == ["6", "5"]


@pytest.mark.usefixtures("url")
def test_ids_on_stdin_in_utf16_are_read(
    fake: FakeConvoso, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = codecs.BOM_UTF16_LE + "222\r\n".encode("utf-16-le")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["campaigns", "activate", "--from-file", "-", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["succeeded"] == ["222"]


@pytest.mark.usefixtures("url")
def test_an_id_file_in_another_encoding_is_a_clear_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_bytes("111\n# Renovación\n".encode("latin-1"))
    assert main(["campaigns", "activate", "--from-file", str(ids)]) == 2
    err = capsys.readouterr().err
    assert "line 2 is not UTF-8 text; save it as UTF-8" in err
    assert "Traceback" not in err


# -- the command line itself -----------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"convoso {convoso_async.__version__} (convoso-async; Python ")
    assert "httpx2 " in out


@pytest.mark.parametrize("where", ["before", "after", "both"])
def test_connection_options_go_before_or_after_the_command(
    where: str,
    fake: FakeConvoso,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = tmp_path / "token"
    token.write_text(fake.TOKEN + "\n")
    monkeypatch.delenv("CONVOSO_AUTH_TOKEN", raising=False)
    # A trap: if the option were dropped, the client would try this closed loopback port.
    monkeypatch.setenv("CONVOSO_BASE_URL", "http://127.0.0.1:9/v1")
    with fake.serve_in_thread() as base_url:
        options = ["--base-url", base_url, "--token-file", str(token), "--max-retries", "0"]
        wrong = ["--base-url", "http://127.0.0.1:9/v1", "--token-file", "/nonexistent"]
        argv = {
            "before": [*options, "campaigns", "list", "--json"],
            "after": ["campaigns", "list", "--json", *options],
            "both": [*wrong, "campaigns", "list", "--json", *options],  # the later one wins
        }[where]
        code = main(argv)
    assert code == 0, capsys.readouterr().err
    assert [c["id"] for c in json.loads(capsys.readouterr().out)] == ["111", "222", "333"]


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"{parser.prog} {action.dest}"
        for parser in _parsers(build_parser())
        for action in parser._actions
        if not action.help and not isinstance(action, argparse._SubParsersAction)
    ]
    assert missing == []
    helped = {parser.prog for parser in _parsers(build_parser())}
    assert {"convoso demo", "convoso schedule run", "convoso schedule apply"} <= helped


def test_fake_server_on_a_busy_port_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["fake-server", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("seed", "names"),
    [
        (["--ids", "111,222,333"], None),
        (["--reference"], ["Sales Campaign", "Customer Service", "Retention Campaign"]),
    ],
)
def test_fake_server_serves_chosen_ids_and_prints_its_token(
    seed: list[str], names: list[str] | None
) -> None:
    process = subprocess.Popen(
        cli_command("fake-server", "--port", "0", *seed),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().removeprefix("listening on ")
        assert process.stdout.readline().strip() == f"token {FakeConvoso.TOKEN}"
        env = cli_env(url)
        listed = subprocess.run(
            cli_command("campaigns", "list", "--json"),
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    finally:
        process.terminate()
        process.wait(timeout=RUN_TIMEOUT)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [row["id"] for row in rows] == ["111", "222", "333"]
    if names is not None:
        assert [row["name"] for row in rows] == names
        assert [row["status"] for row in rows] == ["active", "inactive", "active"]
