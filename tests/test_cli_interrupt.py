"""`convoso campaigns activate/deactivate` when a batch stops early: a refused token, a signal.

The fake runs on a loopback port in this process, so the test sees every request that reached
it; signalled runs are real child processes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli_runner import cli_command, cli_env

from convoso_async.cli import main
from convoso_async.testing import FakeConvoso

STATUS = "/campaigns/status"
#: Only guards against a hang; the runs below take well under a second of work.
PROCESS_GUARD = 60.0


def write_ids(tmp_path: Path, count: int) -> tuple[Path, list[str]]:
    ids = [str(1001 + n) for n in range(count)]
    path = tmp_path / "ids.txt"
    path.write_text("\n".join(ids) + "\n", encoding="utf-8")
    return path, ids


def seen_by_server(fake: FakeConvoso) -> set[str]:
    return {r.campaign_id for r in fake.requests if r.path == STATUS and r.campaign_id}


@pytest.mark.usefixtures("instant_retries")
def test_a_refused_token_prints_one_message_and_exits_three(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: all 300 sent, 600 wrapped lines, exit 1.
    fake = FakeConvoso(campaigns=300)
    ids_file, _ = write_ids(tmp_path, 300)
    monkeypatch.setenv("CONVOSO_AUTH_TOKEN", "wrong-token-12345")
    with fake.serve_in_thread() as url:
        code = main(["campaigns", "deactivate", "--from-file", str(ids_file), "--base-url", url])
    captured = capsys.readouterr()
    assert code == 3
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "AuthenticationError" in lines[0]
    assert "not sent" in lines[0]
    assert "wrong-token-12345" not in captured.err
    assert len(fake.requests) <= 8


@pytest.mark.usefixtures("instant_retries")
def test_a_refused_token_with_json_prints_the_buckets_and_exits_three(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeConvoso(campaigns=300, readonly_tokens=["readonly-token-1"])
    ids_file, ids = write_ids(tmp_path, 300)
    monkeypatch.setenv("CONVOSO_AUTH_TOKEN", "readonly-token-1")
    with fake.serve_in_thread() as url:
        code = main(
            ["campaigns", "activate", "--from-file", str(ids_file), "--base-url", url, "--json"]
        )
    captured = capsys.readouterr()
    assert code == 3
    document = json.loads(captured.out)
    assert document["stopped_by"]["error"] == "PermissionDeniedError"
    assert set(document["failed"]) == seen_by_server(fake)
    assert sorted([*document["failed"], *document["not_sent"]]) == sorted(ids)
    assert document["unknown"] == []
    assert len(captured.err.strip().splitlines()) == 1


@pytest.mark.usefixtures("instant_retries")
def test_a_refused_pre_flight_search_is_one_message_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeConvoso(campaigns=5)
    monkeypatch.setenv("CONVOSO_AUTH_TOKEN", "wrong-token-12345")
    with fake.serve_in_thread() as url:
        code = main(["campaigns", "activate", "1001", "--skip-unchanged", "--base-url", url])
    err = capsys.readouterr().err
    assert code == 3
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert "AuthenticationError" in err


def run_and_signal(
    fake: FakeConvoso, tmp_path: Path, signum: int, *extra: str
) -> subprocess.CompletedProcess[str]:
    """Start a 400-id deactivate in a child process, signal it once requests flow, wait for it."""
    ids_file, _ = write_ids(tmp_path, 400)
    with fake.serve_in_thread() as url:
        child = subprocess.Popen(
            cli_command("campaigns", "deactivate", "--from-file", str(ids_file), *extra),
            env=cli_env(url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + PROCESS_GUARD
            while len(fake.requests) < 40 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(fake.requests) >= 40, "the child never got going"
            child.send_signal(signum)
            out, err = child.communicate(timeout=PROCESS_GUARD)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def test_sigint_prints_the_partial_result_as_json_and_exits_130(tmp_path: Path) -> None:
    # Before: "interrupted", exit 130, nothing on stdout; 8 changes applied and never reported.
    fake = FakeConvoso(campaigns=400, latency=0.2)
    done = run_and_signal(fake, tmp_path, signal.SIGINT, "--json")
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    document = json.loads(done.stdout)
    places = [
        *document["succeeded"],
        *document["failed"],
        *document["skipped"],
        *document["not_sent"],
        *document["unknown"],
    ]
    assert sorted(places) == sorted(str(1001 + n) for n in range(400))
    seen = seen_by_server(fake)
    # Every change that reached the server is reported: done, failed, or in flight (unknown).
    assert seen <= {*document["succeeded"], *document["failed"], *document["unknown"]}
    assert not seen & set(document["not_sent"])
    assert document["unknown"], "with 0.2 s latency some requests were in flight"
    assert document["not_sent"]
    assert "SIGINT" in done.stderr


def test_sigterm_prints_the_partial_table_and_exits_143(tmp_path: Path) -> None:
    fake = FakeConvoso(campaigns=400, latency=0.2)
    done = run_and_signal(fake, tmp_path, signal.SIGTERM)
    assert done.returncode == 143, done.stderr
    assert "not sent" in done.stdout
    assert "unknown" in done.stdout
    assert "SIGTERM" in done.stderr
    assert "Traceback" not in done.stderr
