"""OpenTelemetry: the spans, events and metrics a traced application gets, read back from the SDK.

Each test gets fresh providers (an in-memory span exporter, an in-memory metric reader) through
`_telemetry.use_providers`: the SDK lets a process set its global providers only once, and the
rest of the suite must run with none. `test_the_global_providers_are_used` checks the global
path itself, in a child process. Everything goes over loopback to the fake Convoso.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import httpx2
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, Tracer

import convoso_async
from convoso_async import (
    AdaptiveLimiter,
    AsyncConvoso,
    CircuitBreaker,
    CircuitOpenError,
    Limiter,
    RetryBudget,
    _telemetry,
)
from convoso_async.cli._schedule import reconcile
from convoso_async.schedule import Schedule
from convoso_async.testing import FakeConvoso, Fault

pytestmark = pytest.mark.anyio

PLANTED = "tok-PLANTED-SECRET-4d3c2b1a0f9e"
#: Only guards against a hang; every run here takes well under a second.
HANG_GUARD = 60.0


class Otel:
    """The SDK's view of what the library produced in one test."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer: Tracer = self.tracer_provider.get_tracer("the-caller")
        self._metrics: MetricsData | None = None

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = self.exporter.get_finished_spans()
        return [s for s in found if name is None or s.name == name]

    def span(self, name: str) -> ReadableSpan:
        (found,) = self.spans(name)
        return found

    def children(self, parent: ReadableSpan, name: str | None = None) -> list[ReadableSpan]:
        return [
            s
            for s in self.spans(name)
            if s.parent is not None and s.parent.span_id == parent.context.span_id
        ]

    def metrics(self) -> MetricsData:
        data = self.reader.get_metrics_data()
        assert data is not None
        return data

    def points(self, name: str) -> list[Any]:
        return [
            point
            for resource in self.metrics().resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def unit(self, name: str) -> str | None:
        for resource in self.metrics().resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        return metric.unit
        return None

    def total(self, name: str, **attributes: object) -> int:
        wanted = {k.replace("__", "."): v for k, v in attributes.items()}
        return sum(
            int(p.value) for p in self.points(name) if wanted.items() <= dict(p.attributes).items()
        )


@pytest.fixture
def otel() -> Iterator[Otel]:
    recorded = Otel()
    with _telemetry.use_providers(recorded.tracer_provider, recorded.meter_provider):
        yield recorded


def ids_of(count: int) -> list[str]:
    return [str(1001 + i) for i in range(count)]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def event(span: ReadableSpan, name: str) -> dict[str, Any]:
    (found,) = [e for e in span.events if e.name == name]
    return dict(found.attributes or {})


# --- parentage and attributes -----------------------------------------------------------------


async def test_attempts_nest_under_api_calls_under_the_bulk_call_under_the_callers_span(
    anyio_backend: str, otel: Otel
) -> None:
    fake = FakeConvoso(campaigns=4)  # 1003 is inactive already
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        with otel.tracer.start_as_current_span("the-request"):
            result = await convoso.campaigns.set_status_many(ids_of(4), False, skip_unchanged=True)

    assert result.ok
    caller = otel.span("the-request")
    bulk = otel.span("campaigns.set_status_many")
    assert bulk.parent is not None
    assert bulk.parent.span_id == caller.context.span_id
    assert bulk.context.trace_id == caller.context.trace_id
    api_calls = otel.children(bulk)
    assert sorted(s.name for s in api_calls) == ["campaigns.search"] + ["campaigns.status"] * 3
    for call in api_calls:
        (attempt,) = otel.children(call)
        assert attempt.name == "POST"
        assert attempt.kind is SpanKind.CLIENT
        assert attempt.context.trace_id == caller.context.trace_id
    assert len(otel.spans("POST")) == len(fake.requests) == 4


async def test_every_attribute_of_the_three_kinds_of_span(anyio_backend: str, otel: Otel) -> None:
    fake = FakeConvoso(campaigns=2)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        await convoso.campaigns.set_status("1001", False)
        result = await convoso.campaigns.apply_statuses({"1001": True, "404": True})

    port = int(url.split(":")[2].split("/")[0])
    first, *_ = otel.spans("POST")
    assert attrs(first) == {
        "http.request.method": "POST",
        "server.address": "127.0.0.1",
        "server.port": port,
        "url.full": f"{url}/campaigns/status",
        "convoso.campaign_id": "1001",
        "http.response.status_code": 200,
    }
    assert first.status.status_code is StatusCode.UNSET

    single, ok, missing = sorted(
        otel.spans("campaigns.status"),
        key=lambda s: s.start_time or 0,
    )
    assert attrs(single) == {
        "convoso.campaign_id": "1001",
        "convoso.wanted_active": False,
        "convoso.outcome": "succeeded",
    }
    if attrs(ok)["convoso.campaign_id"] == "404":
        ok, missing = missing, ok
    assert attrs(ok)["convoso.outcome"] == "succeeded"
    assert attrs(missing) == {
        "convoso.campaign_id": "404",
        "convoso.wanted_active": True,
        "convoso.outcome": "failed",
        "error.type": "convoso_async.CampaignNotFoundError",
    }
    assert missing.status.status_code is StatusCode.ERROR
    assert missing.status.description == str(result.failed["404"])
    # Convoso answers "not found" with HTTP 200: the attempt failed, and says how.
    (failed_attempt,) = otel.children(missing)
    assert attrs(failed_attempt)["http.response.status_code"] == 200
    assert attrs(failed_attempt)["error.type"] == "convoso_async.CampaignNotFoundError"
    assert failed_attempt.status.status_code is StatusCode.ERROR

    bulk = otel.span("campaigns.apply_statuses")
    assert attrs(bulk) == {
        "convoso.bulk.total": 2,
        "convoso.bulk.max_concurrency": convoso.max_concurrency,
        "convoso.bulk.skip_unchanged": False,
        "convoso.bulk.dry_run": False,
        "convoso.bulk.succeeded": 1,
        "convoso.bulk.failed": 1,
        "convoso.bulk.skipped": 0,
        "convoso.bulk.not_sent": 0,
        "convoso.bulk.unknown": 0,
        "convoso.bulk.retries": 0,
    }
    # Some ids failing is in the counts; the bulk call itself did its work.
    assert bulk.status.status_code is StatusCode.UNSET
    assert otel.total("convoso.bulk.outcomes", convoso__outcome="succeeded") == 1
    assert otel.total("convoso.bulk.outcomes", convoso__outcome="failed") == 1


async def test_the_duration_histogram_follows_the_http_conventions(
    anyio_backend: str, otel: Otel
) -> None:
    fake = FakeConvoso(campaigns=3)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        await convoso.campaigns.search()
        await convoso.campaigns.set_status_many(ids_of(3), True)

    port = int(url.split(":")[2].split("/")[0])
    (point,) = otel.points("http.client.request.duration")
    assert dict(point.attributes) == {
        "http.request.method": "POST",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
    }
    assert point.count == 4
    assert 0 < point.sum < HANG_GUARD
    assert list(point.explicit_bounds) == list(_telemetry.DURATION_BUCKETS)
    assert otel.unit("http.client.request.duration") == "s"


class _MeterBefore130:
    """A meter as opentelemetry-api before 1.30 has it: no bucket advice on histograms."""

    def __init__(self, meter: Any) -> None:
        self._meter = meter

    def create_histogram(self, name: str, unit: str = "", description: str = "") -> Any:
        return self._meter.create_histogram(name, unit=unit, description=description)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._meter, name)


class _MeterProviderBefore130:
    def __init__(self, provider: MeterProvider) -> None:
        self._provider = provider

    def get_meter(self, *args: Any, **kwargs: Any) -> _MeterBefore130:
        return _MeterBefore130(self._provider.get_meter(*args, **kwargs))


async def test_an_older_metrics_api_without_bucket_advice_still_measures(
    anyio_backend: str,
) -> None:
    # An application may hold opentelemetry-api < 1.30 for its own reasons; telemetry must
    # never fail the call it observes (a TypeError here once failed every bulk call).
    recorded = Otel()
    older: Any = _MeterProviderBefore130(recorded.meter_provider)  # duck-typed, as an old API is
    fake = FakeConvoso(campaigns=2)
    with _telemetry.use_providers(recorded.tracer_provider, older):
        async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
            result = await convoso.campaigns.set_status_many(ids_of(2), True)

    assert len(result.succeeded) == 2
    (point,) = recorded.points("http.client.request.duration")
    assert point.count == 2
    assert list(point.explicit_bounds) != list(_telemetry.DURATION_BUCKETS)
    assert len(recorded.spans("campaigns.status")) == 2


# --- retries, pauses, waits, the budget and the breaker -----------------------------------------


@pytest.mark.usefixtures("instant_retries")
async def test_retries_carry_http_request_resend_count(anyio_backend: str, otel: Otel) -> None:
    fake = FakeConvoso(campaigns=1)
    fake.add_fault(Fault("status", status=503, times=2))
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        await convoso.campaigns.activate("1001")

    call = otel.span("campaigns.status")
    attempts = sorted(otel.children(call), key=lambda s: s.start_time or 0)
    assert [attrs(s).get("http.request.resend_count") for s in attempts] == [None, 1, 2]
    assert [attrs(s)["http.response.status_code"] for s in attempts] == [503, 503, 200]
    assert [attrs(s).get("error.type") for s in attempts] == ["503", "503", None]
    assert [s.status.status_code for s in attempts] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    retries = [dict(e.attributes or {}) for e in call.events if e.name == "convoso.retry"]
    assert [r["convoso.retry"] for r in retries] == [1, 2]
    assert all(r["error.type"] == "503" for r in retries)
    assert attrs(call)["convoso.outcome"] == "succeeded"
    assert otel.total("convoso.retries", error__type="503") == 2
    failed_points = [
        p
        for p in otel.points("http.client.request.duration")
        if dict(p.attributes).get("error.type") == "503"
    ]
    assert sum(p.count for p in failed_points) == 2


async def test_a_429_pause_is_an_event_and_the_429_is_counted(
    anyio_backend: str, otel: Otel
) -> None:
    fake = FakeConvoso(campaigns=1)
    fake.add_fault(Fault("rate_limit", times=1))  # Retry-After: 1, the fake's shortest
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        await convoso.campaigns.activate("1001")

    call = otel.span("campaigns.status")
    assert event(call, "convoso.pause") == {
        "convoso.pause.seconds": 1.0,
        "http.response.status_code": 429,
    }
    throttled, answered = sorted(otel.children(call), key=lambda s: s.start_time or 0)
    assert attrs(throttled)["error.type"] == "429"
    assert attrs(answered)["http.request.resend_count"] == 1
    assert otel.total("convoso.throttled") == 1


async def test_a_long_rate_limit_wait_is_an_event(
    anyio_backend: str, otel: Otel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_telemetry, "TELEMETRY_WAIT_EVENT", 0.05)
    fake = FakeConvoso(campaigns=3)
    async with (
        fake.serve() as url,
        AsyncConvoso(fake.TOKEN, base_url=url, rate_limit=Limiter(10)) as convoso,
    ):
        for campaign_id in ids_of(3):
            await convoso.campaigns.activate(campaign_id)

    waits: list[dict[str, Any]] = [
        dict(e.attributes or {})
        for s in otel.spans("campaigns.status")
        for e in s.events
        if e.name == "convoso.rate_limit.wait"
    ]
    # Evenly spaced at 10/s: every request after the first waits about 0.1 s.
    assert len(waits) >= 1
    assert all(w["convoso.wait.seconds"] >= 0.05 and w["convoso.attempt"] == 1 for w in waits)


@pytest.mark.usefixtures("instant_retries")
async def test_a_retry_the_budget_refuses_is_an_event_and_counted(
    anyio_backend: str, otel: Otel
) -> None:
    fake = FakeConvoso(campaigns=1)
    fake.add_fault(Fault("status", status=503))
    budget = RetryBudget(tokens=1, refill=0)
    async with (
        fake.serve() as url,
        AsyncConvoso(fake.TOKEN, base_url=url, retry_budget=budget) as convoso,
    ):
        with pytest.raises(convoso_async.ServerError):
            await convoso.campaigns.activate("1001")

    call = otel.span("campaigns.status")
    assert len(otel.children(call, "POST")) == 2  # the first, and the one retry the budget paid
    assert event(call, "convoso.retry_budget.refused") == {"convoso.retry_budget.tokens": 0.0}
    assert attrs(call)["convoso.outcome"] == "failed"
    assert attrs(call)["error.type"] == "convoso_async.ServerError"
    assert otel.total("convoso.retry_budget.refusals") == 1


async def test_an_opening_breaker_is_an_event_a_transition_and_a_state(
    anyio_backend: str, otel: Otel
) -> None:
    fake = FakeConvoso(campaigns=5)
    fake.add_fault(Fault("status", status=503))
    breaker = CircuitBreaker(failure_threshold=2, cooldown=60)
    async with (
        fake.serve() as url,
        AsyncConvoso(
            fake.TOKEN, base_url=url, max_retries=0, circuit_breaker=breaker, max_concurrency=1
        ) as convoso,
    ):
        result = await convoso.campaigns.set_status_many(ids_of(5), True)

    assert len(result.failed) == 2
    assert len(result.not_sent) == 3
    opened = [
        dict(e.attributes or {})
        for s in otel.spans("campaigns.status")
        for e in s.events
        if e.name == "convoso.circuit_breaker.opened"
    ]
    assert len(opened) == 1
    assert opened[0]["convoso.circuit_breaker.failures"] == 2
    assert opened[0]["convoso.circuit_breaker.cooldown"] == 60
    assert opened[0]["error.type"] == "ServerError"
    refused = [
        s
        for s in otel.spans("campaigns.status")
        if attrs(s).get("error.type") == f"convoso_async.{CircuitOpenError.__name__}"
    ]
    assert len(refused) == 3
    assert all(not otel.children(s) for s in refused)  # nothing was sent for them
    bulk = otel.span("campaigns.set_status_many")
    assert attrs(bulk)["convoso.bulk.stopped_by"] == "CircuitOpenError"
    assert attrs(bulk)["convoso.bulk.not_sent"] == 3
    assert bulk.status.status_code is StatusCode.ERROR
    assert otel.total("convoso.circuit_breaker.transitions", convoso__circuit_breaker__state="open")
    states = {
        dict(p.attributes)["convoso.circuit_breaker.state"]: p.value
        for p in otel.points("convoso.circuit_breaker.state")
        if dict(p.attributes)["convoso.circuit_breaker.id"] == _telemetry._breakers[breaker]
    }
    assert states == {"open": 1, "closed": 0, "half-open": 0}


async def test_a_breaker_that_probes_and_closes_says_so(anyio_backend: str, otel: Otel) -> None:
    fake = FakeConvoso(campaigns=3)
    fake.add_fault(Fault("status", status=503, on_requests={1, 2}))
    breaker = CircuitBreaker(failure_threshold=2, cooldown=0)
    async with (
        fake.serve() as url,
        AsyncConvoso(
            fake.TOKEN, base_url=url, max_retries=0, circuit_breaker=breaker, max_concurrency=1
        ) as convoso,
    ):
        result = await convoso.campaigns.set_status_many(ids_of(3), True)

    assert len(result.succeeded) == 1
    names = [
        e.name
        for s in sorted(otel.spans("campaigns.status"), key=lambda s: s.start_time or 0)
        for e in s.events
        if e.name.startswith("convoso.circuit_breaker.")
    ]
    assert names == [
        "convoso.circuit_breaker.opened",
        "convoso.circuit_breaker.half_opened",
        "convoso.circuit_breaker.closed",
    ]
    for state in ("open", "half-open", "closed"):
        assert (
            otel.total("convoso.circuit_breaker.transitions", convoso__circuit_breaker__state=state)
            == 1
        )


async def test_the_adaptive_limiters_rate_is_a_gauge(anyio_backend: str, otel: Otel) -> None:
    limiter = AdaptiveLimiter(start=40)
    fake = FakeConvoso(campaigns=2)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url, rate_limit=limiter) as c:
        await c.campaigns.set_status_many(ids_of(2), True)

    (point,) = [
        p
        for p in otel.points("convoso.rate_limiter.rate")
        if dict(p.attributes)["convoso.rate_limiter.id"]
        == _telemetry._limiters[limiter]["convoso.rate_limiter.id"]
    ]
    assert dict(point.attributes)["convoso.rate_limiter.kind"] == "adaptive"
    assert point.value == pytest.approx(limiter.rate)
    assert otel.unit("convoso.rate_limiter.rate") == "{request}/s"


# --- the token ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("instant_retries")
async def test_the_token_is_in_no_span_event_attribute_or_metric(
    anyio_backend: str, otel: Otel
) -> None:
    fake = FakeConvoso(campaigns=6, tokens=[PLANTED])
    fake.add_fault(Fault("status", status=503, on_requests={2}))
    fake.add_fault(Fault("rate_limit", on_requests={3}, retry_after=0.01))
    fake.add_fault(Fault("drop", on_requests={4}))
    breaker = CircuitBreaker(failure_threshold=1, cooldown=60)
    async with fake.serve() as url:
        async with AsyncConvoso(PLANTED, base_url=url, rate_limit="auto") as convoso:
            with otel.tracer.start_as_current_span("caller"):
                await convoso.campaigns.set_status_many(ids_of(6), False, skip_unchanged=True)
                async for _ in convoso.campaigns.iter_set_status(ids_of(3), True):
                    pass
        wrong = PLANTED[::-1]  # a rejected token, echoed by nobody, searched for too
        async with AsyncConvoso(wrong, base_url=url, circuit_breaker=breaker) as rejected:
            await rejected.campaigns.set_status_many(ids_of(2), True)
        fake.add_fault(Fault("status", status=503))
        async with AsyncConvoso(
            PLANTED, base_url=url, circuit_breaker=breaker, max_retries=1
        ) as broken:
            await broken.campaigns.set_status_many(ids_of(3), True)

    assert len(otel.spans()) > 20
    seen_events = {e.name for s in otel.spans() for e in s.events}
    assert {"convoso.retry", "convoso.circuit_breaker.opened"} <= seen_events
    for span in otel.spans():
        text = span.to_json()
        assert PLANTED not in text, span.name
        assert PLANTED[::-1] not in text, span.name
        for value in [
            *attrs(span).values(),
            *(v for e in span.events for v in (e.attributes or {}).values()),
        ]:
            assert PLANTED not in str(value)
    metrics = otel.metrics().to_json()
    assert "convoso.bulk.outcomes" in metrics
    assert PLANTED not in metrics
    assert PLANTED[::-1] not in metrics


# --- the same spans whichever way, whatever the event loop --------------------------------------


def shape(otel: Otel) -> list[tuple[str, str, tuple[str, ...]]]:
    """Each span's name, its parent's name, and its attribute keys: what must not vary."""
    spans = otel.spans()
    names = {s.context.span_id: s.name for s in spans}
    return sorted(
        (
            s.name,
            names.get(s.parent.span_id, "?") if s.parent is not None else "-",
            tuple(sorted(attrs(s))),
        )
        for s in spans
    )


async def bulk_run(otel: Otel, **options: Any) -> list[tuple[str, str, tuple[str, ...]]]:
    fake = FakeConvoso(campaigns=3)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url, **options) as convoso:
        with otel.tracer.start_as_current_span("caller"):
            result = await convoso.campaigns.set_status_many(ids_of(3), False)
    assert result.ok
    return shape(otel)


@pytest.fixture(scope="module")
def expected_shape() -> list[tuple[str, str, tuple[str, ...]]]:
    status_attempt = (
        "convoso.campaign_id",
        "http.request.method",
        "http.response.status_code",
        "server.address",
        "server.port",
        "url.full",
    )
    bulk = (
        "convoso.bulk.dry_run",
        "convoso.bulk.failed",
        "convoso.bulk.max_concurrency",
        "convoso.bulk.not_sent",
        "convoso.bulk.retries",
        "convoso.bulk.skip_unchanged",
        "convoso.bulk.skipped",
        "convoso.bulk.succeeded",
        "convoso.bulk.total",
        "convoso.bulk.unknown",
    )
    call = ("convoso.campaign_id", "convoso.outcome", "convoso.wanted_active")
    return sorted(
        [
            *[("POST", "campaigns.status", status_attempt)] * 3,
            *[("campaigns.status", "campaigns.set_status_many", call)] * 3,
            ("campaigns.set_status_many", "caller", bulk),
            ("caller", "-", ()),
        ]
    )


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_spans_on_trio(
    anyio_backend: str, otel: Otel, expected_shape: Sequence[object]
) -> None:
    assert await bulk_run(otel) == expected_shape


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # on trio the opt-in is httpx2 anyway
async def test_spans_with_the_aiohttp_opt_in(
    anyio_backend: str, otel: Otel, expected_shape: Sequence[object]
) -> None:
    pytest.importorskip("aiohttp")
    assert await bulk_run(otel, transport="aiohttp") == expected_shape


async def test_spans_with_a_callers_httpx2_client(
    anyio_backend: str, otel: Otel, expected_shape: Sequence[object]
) -> None:
    async with httpx2.AsyncClient() as http:
        assert await bulk_run(otel, http_client=http) == expected_shape


# --- stopping early -----------------------------------------------------------------------------


async def test_a_cancelled_batch_ends_its_span_as_an_error_with_every_bucket(
    anyio_backend: str, otel: Otel
) -> None:
    fake = FakeConvoso(campaigns=40, latency=0.2)
    seen: list[Any] = []
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        with anyio.move_on_after(0.5):
            await convoso.campaigns.set_status_many(
                ids_of(40), False, max_concurrency=4, on_interrupt=seen.append
            )

    (result,) = seen
    bulk = otel.span("campaigns.set_status_many")
    assert bulk.status.status_code is StatusCode.ERROR
    assert attrs(bulk)["convoso.bulk.stopped_by"] == "interrupted"
    assert attrs(bulk)["error.type"] in {"asyncio.exceptions.CancelledError", "trio.Cancelled"}
    counts = {b: attrs(bulk)[f"convoso.bulk.{b}"] for b in ("succeeded", "not_sent", "unknown")}
    assert counts == {
        "succeeded": len(result.succeeded),
        "not_sent": len(result.not_sent),
        "unknown": len(result.unknown),
    }
    assert sum(counts.values()) == 40
    assert counts["unknown"] >= 1
    cancelled = [
        s for s in otel.spans("campaigns.status") if attrs(s)["convoso.outcome"] == "cancelled"
    ]
    assert len(cancelled) == counts["unknown"]
    assert all(s.status.status_code is StatusCode.ERROR for s in cancelled)
    assert otel.total("convoso.bulk.outcomes", convoso__outcome="unknown") == counts["unknown"]


async def test_a_deadline_ends_the_span_stopped_by_it(anyio_backend: str, otel: Otel) -> None:
    fake = FakeConvoso(campaigns=30, latency=0.2)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        result = await convoso.campaigns.set_status_many(
            ids_of(30), False, max_concurrency=4, deadline=0.5
        )

    bulk = otel.span("campaigns.set_status_many")
    assert attrs(bulk)["convoso.bulk.deadline"] == 0.5
    assert attrs(bulk)["convoso.bulk.stopped_by"] == "NotSentError"
    assert attrs(bulk)["convoso.bulk.not_sent"] == len(result.not_sent) > 0
    assert bulk.status.status_code is StatusCode.ERROR


async def test_leaving_iter_set_status_early_ends_its_span_closed(
    anyio_backend: str, otel: Otel
) -> None:
    fake = FakeConvoso(campaigns=20, latency=0.05)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        with otel.tracer.start_as_current_span("consumer"):
            async with contextlib.aclosing(
                convoso.campaigns.iter_set_status(ids_of(20), True, max_concurrency=2)
            ) as outcomes:
                async for _ in outcomes:
                    break

    stream = otel.span("campaigns.iter_set_status")
    assert stream.parent is not None
    assert stream.parent.span_id == otel.span("consumer").context.span_id
    assert attrs(stream)["convoso.bulk.stopped_by"] == "closed"
    assert stream.status.status_code is StatusCode.UNSET
    assert attrs(stream)["convoso.bulk.succeeded"] >= 1
    children = otel.children(stream)
    assert children
    assert {s.name for s in children} == {"campaigns.status"}
    assert len(otel.spans("campaigns.status")) == len(children)  # none escaped to the root


async def test_a_schedule_apply_holds_its_bulk_call_and_counts_once(
    anyio_backend: str, otel: Otel
) -> None:
    schedule = Schedule.from_toml(
        'timezone = "UTC"\n\n[[window]]\ndays = "weekdays"\nstart = "08:00"\nend = "17:00"\n'
        'campaigns = ["1001", "1002"]\n'
    )
    evening = dt.datetime(2026, 3, 9, 20, 0, tzinfo=dt.timezone.utc)  # both should be off
    fake = FakeConvoso(campaigns=3)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        result = await reconcile(convoso, schedule, evening)

    outer = otel.span("schedule.apply")
    inner = otel.span("campaigns.apply_statuses")
    assert inner.parent is not None
    assert inner.parent.span_id == outer.context.span_id
    assert attrs(outer)["convoso.bulk.total"] == 2
    assert attrs(outer)["convoso.bulk.succeeded"] == len(result.succeeded) == 2
    assert otel.total("convoso.bulk.outcomes") == len(result.succeeded) + len(result.skipped)


# --- the global providers, and none ------------------------------------------------------------

_GLOBAL_CHILD = """
import json, anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from convoso_async import AsyncConvoso
from convoso_async.testing import FakeConvoso

async def main():
    fake = FakeConvoso(campaigns=2)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        await convoso.campaigns.search()            # before any provider: nothing recorded
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)        # what an application does, once
        await convoso.campaigns.set_status("1001", False)
    return [s.name for s in exporter.get_finished_spans()]

print(json.dumps(anyio.run(main)))
"""

_NO_PROVIDER_CHILD = """
import json, anyio
from opentelemetry import metrics, trace   # the API imported (another library uses it)

def refuse(*args, **kwargs):
    raise AssertionError("a span or meter was asked for with no provider set")

trace.ProxyTracerProvider.get_tracer = refuse
trace.ProxyTracer.start_span = refuse
trace.NoOpTracer.start_span = refuse
type(metrics.get_meter_provider()).get_meter = refuse

from convoso_async import AsyncConvoso, _telemetry
from convoso_async.testing import FakeConvoso

async def main():
    fake = FakeConvoso(campaigns=50)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url, rate_limit="auto") as c:
        result = await c.campaigns.set_status_many([str(1001 + i) for i in range(50)], False)
    return {"ok": result.ok, "active": _telemetry.active() is not None}

print(json.dumps(anyio.run(main)))
"""


def run_child(code: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_global_providers_are_used_from_the_moment_they_are_set() -> None:
    assert run_child(_GLOBAL_CHILD) == ["POST", "campaigns.status"]


def test_with_the_api_but_no_provider_no_span_or_meter_is_asked_for() -> None:
    assert run_child(_NO_PROVIDER_CHILD) == {"ok": True, "active": False}


async def test_a_post_to_any_endpoint_is_an_api_call_span_over_its_attempts(
    otel: Otel, anyio_backend: str
) -> None:
    fake = FakeConvoso(campaigns=1)
    fake.add_endpoint("/leads/search")
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        with otel.tracer.start_as_current_span("caller") as caller:
            await convoso.post("/leads/search", {"list_id": 5})
    call = otel.span("convoso.post")
    assert call.parent is not None
    assert call.parent.span_id == caller.get_span_context().span_id
    assert dict(call.attributes or {})["convoso.endpoint"] == "/leads/search"
    (attempt,) = otel.children(call, "POST")
    assert dict(attempt.attributes or {})["url.full"] == f"{url}/leads/search"


def test_the_sync_clients_calls_are_children_of_the_callers_span(otel: Otel) -> None:
    # The sync client runs its calls on a loop of its own thread; the caller's context goes
    # along (asyncio's call_soon_threadsafe runs the portal's callback in a copy of it).
    fake = FakeConvoso(campaigns=3)
    with (
        fake.serve_in_thread() as url,
        convoso_async.Convoso(fake.TOKEN, base_url=url) as client,
        otel.tracer.start_as_current_span("caller") as caller,
    ):
        assert len(client.campaigns.search()) == 3
        result = client.campaigns.set_status_many(["1001", "1002"], False)
    assert result.ok
    caller_id = caller.get_span_context().span_id
    search = otel.span("campaigns.search")
    bulk = otel.span("campaigns.set_status_many")
    for span in (search, bulk):
        assert span.parent is not None
        assert span.parent.span_id == caller_id, span.name
    assert len(otel.children(bulk, "campaigns.status")) == 2
