"""The `convoso` command with text in any encoding: token files as editors save them, and output
to a stdout or stderr that is not UTF-8 (``PYTHONIOENCODING=ascii``, a C locale, a Windows pipe
in cp1252).

Token files are read as id files are: UTF-8 with or without a byte-order mark, UTF-16/32 with
one; anything else is a usage error (exit 2) naming the file and line, never a traceback and
never the token. Output never fails on a character its stream can't hold: plain lines escape it
(``\\xf3``), JSON uses its own escapes (``\\u00f3``), so a parser reads the same document.
"""

from __future__ import annotations

import codecs
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import cli_command, cli_env, serving_cli
from test_cli_output import run_on_terminal

from convoso_async.cli import main
from convoso_async.testing import FakeConvoso

RUN_TIMEOUT = 60.0
SPANISH = "Renovación"  # cp1252 holds it, ASCII does not
ELSEWHERE = "Café ✓ 日本"  # neither holds all of it


@pytest.fixture
def fake() -> FakeConvoso:
    return FakeConvoso(
        campaigns=[
            {"id": "111", "name": SPANISH, "status": "Y"},
            {"id": "222", "name": ELSEWHERE, "status": "N"},
        ]
    )


# -- token files ------------------------------------------------------------------------------


@pytest.fixture
def url(fake: FakeConvoso, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with serving_cli(fake, monkeypatch) as base_url:
        monkeypatch.delenv("CONVOSO_AUTH_TOKEN")
        yield base_url


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-8", codecs.BOM_UTF8),  # Notepad's "UTF-8 with BOM"
        ("utf-16-le", codecs.BOM_UTF16_LE),  # Notepad's "Unicode", PowerShell 5's Out-File
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-32-le", codecs.BOM_UTF32_LE),
        ("utf-8", b""),
    ],
)
@pytest.mark.usefixtures("url")
def test_a_token_file_with_a_bom_or_in_utf16_is_read(
    encoding: str, bom: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token"
    token.write_bytes(bom + f"{FakeConvoso.TOKEN}\r\n".encode(encoding))
    assert main(["campaigns", "list", "--json", "--token-file", str(token)]) == 0
    assert [c["id"] for c in json.loads(capsys.readouterr().out)] == ["111", "222"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("tök-123\n".encode("latin-1"), "line 1 is not UTF-8 text; save it as UTF-8"),
        (codecs.BOM_UTF16_LE + b"t\x00o\x00k", "line 1 is not UTF-16 text; save it as UTF-8"),
        (b"\n\xff\xfe", "line 2 is not UTF-8 text"),
        # UTF-16 without its mark reads as UTF-8 with NULs: no token has those.
        ("tok-123\n".encode("utf-16-le"), "control or invisible character"),
    ],
)
@pytest.mark.usefixtures("url")
def test_a_token_file_in_another_encoding_is_a_usage_error_that_quotes_nothing(
    data: bytes, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token"
    token.write_bytes(data)
    assert main(["campaigns", "list", "--token-file", str(token)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert "tök" not in err
    assert "tok-123" not in err


def test_a_token_variable_set_from_a_file_with_a_bom_works(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVOSO_AUTH_TOKEN", "\ufeff" + FakeConvoso.TOKEN)
    assert main(["campaigns", "list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


# -- output to a stream that is not UTF-8 -----------------------------------------------------


def run(argv: list[str], url: str, encoding: str) -> subprocess.CompletedProcess[bytes]:
    """Run the command with stdout and stderr in ``encoding``, as pipes."""
    return subprocess.run(
        cli_command(*argv),
        capture_output=True,
        env=cli_env(url, PYTHONIOENCODING=encoding),
        stdin=subprocess.DEVNULL,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def shown(text: str, encoding: str) -> str:
    """``text`` as a stream in ``encoding`` writes it: what it can't hold, escaped."""
    return text.encode(encoding, "backslashreplace").decode(encoding)


ENCODINGS = ["ascii", "cp1252"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_campaign_lines_escape_what_the_encoding_lacks(fake: FakeConvoso, encoding: str) -> None:
    with fake.serve_in_thread() as url:
        done = run(["campaigns", "list"], url, encoding)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    lines = done.stdout.decode(encoding).splitlines()
    assert [line.split("\t")[1] for line in lines] == [
        shown(SPANISH, encoding),
        shown(ELSEWHERE, encoding),
    ]
    if encoding == "cp1252":
        assert lines[0].split("\t")[1] == SPANISH  # held as it is where the encoding can


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    "argv", [["campaigns", "list", "--json"], ["api", "/campaigns/search"]], ids=["list", "api"]
)
def test_json_is_the_same_document_in_any_encoding(
    fake: FakeConvoso, encoding: str, argv: list[str]
) -> None:
    with fake.serve_in_thread() as url:
        done = run(argv, url, encoding)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout.decode(encoding))
    rows = document if isinstance(document, list) else document["data"]
    assert [row["name"] for row in rows] == [SPANISH, ELSEWHERE]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_bulk_result_lines_escape_what_the_encoding_lacks(fake: FakeConvoso, encoding: str) -> None:
    with fake.serve_in_thread() as url:
        done = run(["campaigns", "activate", "222", SPANISH, ELSEWHERE], url, encoding)
    assert done.returncode == 1, done.stderr  # two campaigns failed: they do not exist
    out = done.stdout.decode(encoding)
    for name in (SPANISH, ELSEWHERE):
        assert f"failed {shown(name, encoding)}: CampaignNotFoundError: " in out
    assert fake.statuses()["222"] == "Y"


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["campaigns", "activate", "--from-file", f"/nonexistent/{ELSEWHERE}"], "cannot read"),
        (["campaigns", f"frobnicate-{ELSEWHERE}"], "invalid choice"),
    ],
    ids=["usage", "argparse"],
)
def test_errors_on_stderr_escape_what_the_encoding_lacks(
    fake: FakeConvoso, encoding: str, argv: list[str], message: str
) -> None:
    with fake.serve_in_thread() as url:
        done = run(argv, url, encoding)
    assert done.returncode == 2
    err = done.stderr.decode(encoding)
    assert message in err
    assert shown(ELSEWHERE, encoding) in err
    assert "Traceback" not in err


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_terminal_in_another_encoding_shows_the_table(fake: FakeConvoso, encoding: str) -> None:
    with fake.serve_in_thread() as url:
        env = {**cli_env(url, PYTHONIOENCODING=encoding), "TERM": "xterm-256color"}
        code, screen = run_on_terminal(cli_command("campaigns", "list"), env, encoding)
    assert code == 0, screen
    assert "2 campaigns" in screen
    assert shown(SPANISH, encoding) in screen
    assert "Traceback" not in screen
