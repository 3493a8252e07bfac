"""Every log record the library emits carries its values as fields (``extra``), text unchanged.

A JSON log pipeline reads ``record.campaign_id``, ``record.outcome``, ``record.status_code``...
without parsing the message back. One test reads the source: every call on a logger passes
``extra``; the others read the records a real run leaves.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

import convoso_async
from convoso_async import AsyncConvoso, CircuitBreaker
from convoso_async.testing import FakeConvoso, Fault

PACKAGE_DIR = Path(convoso_async.__file__).resolve().parent
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def logging_calls() -> list[tuple[str, int, bool]]:
    """(file, line, whether it passes extra) for every ``*logger.<level>(...)`` call."""
    calls = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEVELS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id.endswith("logger")
            ):
                has_extra = any(k.arg == "extra" for k in node.keywords)
                calls.append((str(path.relative_to(PACKAGE_DIR)), node.lineno, has_extra))
    return calls


def test_every_logging_call_of_the_package_passes_its_fields_as_extra() -> None:
    calls = logging_calls()
    assert len(calls) >= 20  # the walk found the package's logging
    missing = [f"{file}:{line}" for file, line, has_extra in calls if not has_extra]
    assert missing == []


def fields(record: logging.LogRecord, *names: str) -> dict[str, object]:
    return {name: record.__dict__.get(name, "<absent>") for name in names}


@pytest.mark.anyio
@pytest.mark.usefixtures("instant_retries")
async def test_request_retry_and_audit_records_carry_their_fields(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="convoso_async")
    fake = FakeConvoso(campaigns=2)
    fake.add_fault(Fault("status", status=503, campaign_id="1001", times=1))
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        await convoso.campaigns.set_status_many(["1001", "404"], False)

    answered = next(
        r
        for r in caplog.records
        if r.getMessage().startswith("POST /campaigns/status campaign=1001 -> 200")
    )
    assert fields(answered, "status_code", "attempt", "campaign_id") == {
        "status_code": 200,
        "attempt": 2,
        "campaign_id": "1001",
    }
    failed_first = next(
        r
        for r in caplog.records
        if r.getMessage().startswith("POST /campaigns/status campaign=1001 -> 503")
    )
    assert fields(failed_first, "method", "path", "campaign_id", "status_code", "attempt") == {
        "method": "POST",
        "path": "/campaigns/status",
        "campaign_id": "1001",
        "status_code": 503,
        "attempt": 1,
    }
    assert isinstance(failed_first.__dict__["elapsed"], float)
    retry = next(r for r in caplog.records if r.getMessage().startswith("retrying POST"))
    assert fields(retry, "campaign_id", "error", "retry", "max_retries", "delay") == {
        "campaign_id": "1001",
        "error": "ServerError",
        "retry": 1,
        "max_retries": 3,
        "delay": 0.0,
    }
    audits = {r.__dict__["campaign_id"]: r for r in caplog.records if r.name.endswith(".audit")}
    assert audits["1001"].getMessage() == (
        "campaign=1001 wanted=inactive outcome=succeeded attempts=2"
    )
    assert fields(audits["1001"], "wanted", "wanted_active", "outcome", "attempts") == {
        "wanted": "inactive",
        "wanted_active": False,
        "outcome": "succeeded",
        "attempts": 2,
    }
    assert audits["404"].getMessage() == (
        "campaign=404 wanted=inactive outcome=failed attempts=1 error=CampaignNotFoundError"
    )
    assert fields(audits["404"], "outcome", "attempts", "error") == {
        "outcome": "failed",
        "attempts": 1,
        "error": "CampaignNotFoundError",
    }


@pytest.mark.anyio
async def test_breaker_records_carry_the_state_and_its_reasons(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="convoso_async")
    fake = FakeConvoso(campaigns=3)
    fake.add_fault(Fault("status", status=503, on_requests={1}))
    breaker = CircuitBreaker(failure_threshold=1, cooldown=0)
    async with (
        fake.serve() as url,
        AsyncConvoso(fake.TOKEN, base_url=url, max_retries=0, circuit_breaker=breaker) as convoso,
    ):
        await convoso.campaigns.set_status_many(["1001", "1002"], True, max_concurrency=1)

    states = [r.__dict__.get("state") for r in caplog.records if "circuit breaker" in r.msg]
    assert states == ["open", "half-open", "closed"]
    opened = next(r for r in caplog.records if r.__dict__.get("state") == "open")
    assert fields(opened, "failures", "last_error", "cooldown") == {
        "failures": 1,
        "last_error": "ServerError",
        "cooldown": 0,
    }
    assert opened.getMessage().startswith("circuit breaker open after 1 failures in a row")
