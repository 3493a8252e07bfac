"""Telemetry that raises: an application's provider, processor, span or meter failing at any hook.

Whatever the hook, the call's result is the server's answer: the library catches the exception
where it meets OpenTelemetry, logs one WARNING naming the provider, and records nothing more
with those providers. The providers are the SDK's, with one hook made to raise; everything goes
over loopback to the fake Convoso.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

pytest.importorskip("opentelemetry.sdk")

import opentelemetry.context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import convoso_async
from convoso_async import AsyncConvoso, CircuitBreaker, RetryBudget, ServerError, _telemetry
from convoso_async.testing import FakeConvoso, Fault

pytestmark = pytest.mark.anyio

PLANTED = "tok-PLANTED-SECRET-77e1c0ffee"

TRACE_HOOKS = (
    "get_tracer",
    "start_span",
    "on_start",
    "on_end",
    "set_attribute",
    "set_status",
    "add_event",
    "end",
    "context.attach",
)
METRIC_HOOKS = (
    "get_meter",
    "create_histogram",
    "create_counter",
    "create_observable_gauge",
    "add",
    "record",
)
HOOKS = TRACE_HOOKS + METRIC_HOOKS


class Hostile:
    """An application's OpenTelemetry set-up (the SDK's) whose ``hook`` raises ``error``."""

    def __init__(self, hook: str, error: type[BaseException] = RuntimeError) -> None:
        self.hook = hook
        self.error = error
        self.calls = 0
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = HostileTracerProvider(self)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer_provider.add_span_processor(HostileProcessor(self))
        self.meter_provider = HostileMeterProvider(self, metric_readers=[InMemoryMetricReader()])

    def hit(self, hook: str) -> None:
        if hook == self.hook:
            self.calls += 1
            raise self.error(f"the application's {hook} failed")

    @property
    def provider_name(self) -> str:
        """The class the library's warning names: the provider whose hook raised."""
        provider = self.tracer_provider if self.hook in TRACE_HOOKS else self.meter_provider
        return type(provider).__qualname__


class HostileProcessor(SpanProcessor):
    def __init__(self, hostile: Hostile) -> None:
        self.hostile = hostile

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        self.hostile.hit("on_start")

    def on_end(self, span: ReadableSpan) -> None:
        self.hostile.hit("on_end")


class HostileSpan(trace.Span):
    """An SDK span whose methods go through the hostile set-up first.

    A `trace.Span` itself: the API's ``get_current_span`` gives nothing else back.
    """

    def __init__(self, span: trace.Span, hostile: Hostile) -> None:
        self._span = span
        self._hostile = hostile

    def set_attribute(self, key: str, value: Any) -> None:
        self._hostile.hit("set_attribute")
        self._span.set_attribute(key, value)

    def set_attributes(self, attributes: Any) -> None:
        self._hostile.hit("set_attributes")
        self._span.set_attributes(attributes)

    def set_status(self, *args: Any, **kwargs: Any) -> None:
        self._hostile.hit("set_status")
        self._span.set_status(*args, **kwargs)

    def add_event(self, *args: Any, **kwargs: Any) -> None:
        self._hostile.hit("add_event")
        self._span.add_event(*args, **kwargs)

    def record_exception(self, *args: Any, **kwargs: Any) -> None:
        self._hostile.hit("record_exception")
        self._span.record_exception(*args, **kwargs)

    def end(self, end_time: int | None = None) -> None:
        self._hostile.hit("end")
        self._span.end(end_time)

    def update_name(self, name: str) -> None:
        self._span.update_name(name)

    def get_span_context(self) -> trace.SpanContext:
        return self._span.get_span_context()

    def is_recording(self) -> bool:
        return self._span.is_recording()


class HostileTracer:
    def __init__(self, tracer: Any, hostile: Hostile) -> None:
        self._tracer = tracer
        self._hostile = hostile

    def start_span(self, *args: Any, **kwargs: Any) -> HostileSpan:
        self._hostile.hit("start_span")
        return HostileSpan(self._tracer.start_span(*args, **kwargs), self._hostile)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracer, name)


class HostileTracerProvider(TracerProvider):
    def __init__(self, hostile: Hostile) -> None:
        super().__init__()
        self.hostile = hostile

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        self.hostile.hit("get_tracer")
        return HostileTracer(super().get_tracer(*args, **kwargs), self.hostile)


class HostileInstrument:
    def __init__(self, instrument: Any, hostile: Hostile) -> None:
        self._instrument = instrument
        self._hostile = hostile

    def add(self, *args: Any, **kwargs: Any) -> None:
        self._hostile.hit("add")
        self._instrument.add(*args, **kwargs)

    def record(self, *args: Any, **kwargs: Any) -> None:
        self._hostile.hit("record")
        self._instrument.record(*args, **kwargs)


class HostileMeter:
    def __init__(self, meter: Any, hostile: Hostile) -> None:
        self._meter = meter
        self._hostile = hostile

    def create_histogram(self, *args: Any, **kwargs: Any) -> HostileInstrument:
        self._hostile.hit("create_histogram")
        return HostileInstrument(self._meter.create_histogram(*args, **kwargs), self._hostile)

    def create_counter(self, *args: Any, **kwargs: Any) -> HostileInstrument:
        self._hostile.hit("create_counter")
        return HostileInstrument(self._meter.create_counter(*args, **kwargs), self._hostile)

    def create_observable_gauge(self, *args: Any, **kwargs: Any) -> Any:
        self._hostile.hit("create_observable_gauge")
        return self._meter.create_observable_gauge(*args, **kwargs)


class HostileMeterProvider(MeterProvider):
    def __init__(self, hostile: Hostile, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hostile = hostile

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        self.hostile.hit("get_meter")
        return HostileMeter(super().get_meter(*args, **kwargs), self.hostile)


@contextlib.contextmanager
def hostile_telemetry(
    hook: str, monkeypatch: pytest.MonkeyPatch, error: type[BaseException] = RuntimeError
) -> Iterator[Hostile]:
    """Fresh providers whose ``hook`` raises, in force inside the block."""
    hostile = Hostile(hook, error)
    attach = opentelemetry.context.attach

    def hostile_attach(context: Any) -> object:
        hostile.hit("context.attach")
        return attach(context)

    with monkeypatch.context() as patched:
        patched.setattr(opentelemetry.context, "attach", hostile_attach)
        with _telemetry.use_providers(hostile.tracer_provider, hostile.meter_provider):
            yield hostile


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The library's records about the application's telemetry."""
    return [
        r
        for r in caplog.records
        if r.name == "convoso_async" and r.getMessage().startswith("OpenTelemetry")
    ]


IDS = ["1001", "1002", "1003"]


@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize("hook", HOOKS)
async def test_a_raising_hook_never_changes_a_calls_result(
    hook: str,
    anyio_backend: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="convoso_async")
    inserted: list[dict[str, str]] = []

    def insert(fields: dict[str, str]) -> dict[str, object]:
        inserted.append(fields)
        return {"success": True, "data": {"lead_id": len(inserted)}}

    fake = FakeConvoso(campaigns=3, tokens=[PLANTED])
    fake.add_endpoint("/leads/insert", insert)
    fake.add_fault(Fault("status", status=503, campaign_id="1002", times=1))  # one retry
    hostiles: list[Hostile] = []
    async with fake.serve() as url, AsyncConvoso(PLANTED, base_url=url) as convoso:
        # Each kind of call meets fresh providers: each sees the hook raise.
        with hostile_telemetry(hook, monkeypatch) as hostile:
            hostiles.append(hostile)
            result = await convoso.campaigns.set_status_many(IDS, False)
        assert sorted(result.succeeded) == IDS
        assert not result.failed
        assert not result.unknown
        assert not result.not_sent
        assert set(fake.statuses().values()) == {"N"}

        with hostile_telemetry(hook, monkeypatch) as hostile:
            hostiles.append(hostile)
            outcomes = [o async for o in convoso.campaigns.iter_set_status(IDS, True)]
        assert sorted(o.campaign_id for o in outcomes if o.ok) == IDS
        assert set(fake.statuses().values()) == {"Y"}

        with hostile_telemetry(hook, monkeypatch) as hostile:
            hostiles.append(hostile)
            answer = await convoso.post("/leads/insert", {"first_name": "Ada"})
        assert answer == {"success": True, "data": {"lead_id": 1}}
        assert len(inserted) == 1  # sent once: nothing raised after the server acted

        with hostile_telemetry(hook, monkeypatch) as hostile:
            hostiles.append(hostile)
            campaigns = await convoso.campaigns.search()
            await convoso.campaigns.set_status("1001", False)
        assert len(campaigns) == 3
        assert fake.campaign_status("1001") == "N"

    calls = [h.calls for h in hostiles]
    assert sum(calls) >= 1, f"the workload never reached {hook}"
    assert max(calls) == 1  # once it raised, those providers were asked for nothing more
    warnings = warnings_of(caplog)
    assert len(warnings) == sum(calls)  # once per set of providers that failed
    for record in warnings:
        assert record.levelno == logging.WARNING
        message = record.getMessage()
        assert hostiles[0].provider_name in message
        assert "RuntimeError" in message
    assert PLANTED not in caplog.text


@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize("error", [GeneratorExit, SystemExit])
@pytest.mark.parametrize("hook", ["start_span", "on_start", "on_end", "context.attach", "add"])
async def test_a_hook_raising_generator_exit_or_system_exit_changes_no_result(
    hook: str,
    error: type[BaseException],
    anyio_backend: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Neither is a cancellation or Ctrl-C: a GeneratorExit from a hook is not a generator of
    # ours being closed (a stream would take it for its consumer leaving), and an exporter
    # that gives up with sys.exit() must not turn changes the server made into an exit.
    inserted: list[dict[str, str]] = []

    def insert(fields: dict[str, str]) -> dict[str, object]:
        inserted.append(fields)
        return {"success": True}

    fake = FakeConvoso(campaigns=3, tokens=[PLANTED])
    fake.add_endpoint("/leads/insert", insert)
    async with fake.serve() as url, AsyncConvoso(PLANTED, base_url=url) as convoso:
        with hostile_telemetry(hook, monkeypatch, error) as hostile:
            result = await convoso.campaigns.set_status_many(IDS, False)
        assert sorted(result.succeeded) == IDS
        assert set(fake.statuses().values()) == {"N"}
        with hostile_telemetry(hook, monkeypatch, error):
            outcomes = [o async for o in convoso.campaigns.iter_set_status(IDS, True)]
        assert sorted(o.campaign_id for o in outcomes if o.ok) == IDS
        with hostile_telemetry(hook, monkeypatch, error):
            assert await convoso.post("/leads/insert", {"first_name": "Ada"}) == {"success": True}
        assert len(inserted) == 1
    assert hostile.calls == 1
    assert error.__name__ in warnings_of(caplog)[0].getMessage()


@pytest.mark.parametrize("hook", ["add", "add_event", "on_end", "record"])
async def test_a_circuit_breaker_opens_and_closes_through_raising_telemetry(
    hook: str,
    anyio_backend: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeConvoso(campaigns=2)
    fake.add_fault(Fault("status", status=503, times=1))
    breaker = CircuitBreaker(failure_threshold=1, cooldown=0)
    async with (
        fake.serve() as url,
        AsyncConvoso(fake.TOKEN, base_url=url, max_retries=0, circuit_breaker=breaker) as convoso,
    ):
        with hostile_telemetry(hook, monkeypatch) as hostile:
            with pytest.raises(ServerError):  # the server's own error, not the telemetry's
                await convoso.campaigns.set_status("1001", False)
            await convoso.campaigns.set_status("1002", False)  # the probe: closes the breaker
    assert breaker.state == "closed"
    assert fake.campaign_status("1002") == "N"
    assert hostile.calls == 1
    assert len(warnings_of(caplog)) == 1


@pytest.mark.usefixtures("instant_retries")
@pytest.mark.parametrize("hook", ["add", "add_event"])
async def test_a_refused_retry_reports_through_raising_telemetry(
    hook: str,
    anyio_backend: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeConvoso(campaigns=2)
    fake.add_fault(Fault("status", status=503))
    budget = RetryBudget(tokens=1, refill=0)
    async with (
        fake.serve() as url,
        AsyncConvoso(fake.TOKEN, base_url=url, retry_budget=budget) as convoso,
    ):
        with pytest.raises(ServerError):  # spends the budget, no telemetry in force
            await convoso.campaigns.set_status("1001", False)
        # Its first retry is refused: the refusal's event and count are the first hooks reached.
        with hostile_telemetry(hook, monkeypatch) as hostile, pytest.raises(ServerError):
            await convoso.campaigns.set_status("1002", False)
    assert hostile.calls == 1
    assert len(warnings_of(caplog)) == 1
    assert len(fake.requests) == 3  # two for the first call, one for the second


async def test_a_cancelled_call_stays_cancelled_when_span_end_raises(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeConvoso(campaigns=20, latency=0.2)
    seen: list[convoso_async.BatchResult] = []
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        with hostile_telemetry("on_end", monkeypatch), anyio.move_on_after(0.3) as scope:
            await convoso.campaigns.set_status_many(
                [str(1001 + i) for i in range(20)],
                False,
                max_concurrency=2,
                on_interrupt=seen.append,
            )
    assert scope.cancelled_caught  # the cancellation went on; no RuntimeError replaced it
    (result,) = seen
    assert len(result.succeeded) + len(result.unknown) + len(result.not_sent) == 20


@pytest.mark.parametrize("hook", ["get_tracer", "start_span", "on_end", "create_counter", "add"])
def test_a_keyboard_interrupt_from_a_hook_is_not_swallowed(
    hook: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The boundary catches Exception: Ctrl-C (and a cancellation) raised in a hook goes on.
    def observe_a_bulk_call() -> None:
        with _telemetry.api_call("campaigns.search"):
            bulk = _telemetry.bulk_call("campaigns.set_status_many", {})
            with bulk:
                bulk.finish({"succeeded": 1})

    with (
        hostile_telemetry(hook, monkeypatch, KeyboardInterrupt) as hostile,
        pytest.raises(KeyboardInterrupt),
    ):
        observe_a_bulk_call()
    assert hostile.calls >= 1


async def test_telemetry_comes_back_when_the_application_sets_working_providers(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeConvoso(campaigns=2)
    exporter = InMemorySpanExporter()
    working = TracerProvider()
    working.add_span_processor(SimpleSpanProcessor(exporter))
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        with hostile_telemetry("on_start", monkeypatch) as hostile:
            await convoso.campaigns.set_status("1001", False)
            await convoso.campaigns.set_status("1002", False)
        with _telemetry.use_providers(working, None):
            await convoso.campaigns.set_status("1001", True)
    assert hostile.calls == 1
    assert len(warnings_of(caplog)) == 1
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["POST", "campaigns.status"]


def test_the_sync_clients_bulk_change_reports_every_id_when_span_end_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeConvoso(campaigns=3)
    with (
        hostile_telemetry("on_end", monkeypatch) as hostile,
        fake.serve_in_thread() as url,
        convoso_async.Convoso(fake.TOKEN, base_url=url) as client,
    ):
        result = client.campaigns.set_status_many(IDS, False)
    assert sorted(result.succeeded) == IDS
    assert not result.failed
    assert set(fake.statuses().values()) == {"N"}
    assert hostile.calls == 1
    assert len(warnings_of(caplog)) == 1


_BROKEN_PROVIDER_CHILD = """
import json, logging, os
os.environ["OTEL_PYTHON_TRACER_PROVIDER"] = "no_such_provider"  # no entry point by that name
import anyio
from opentelemetry import trace  # builds the named provider at each look-up: it raises

kept = []
class Keep(logging.Handler):
    def emit(self, record):
        kept.append(record.getMessage())

logging.getLogger("convoso_async").addHandler(Keep())
logging.getLogger("convoso_async").setLevel(logging.WARNING)
from convoso_async import AsyncConvoso
from convoso_async.testing import FakeConvoso

async def main():
    fake = FakeConvoso(campaigns=3)
    async with fake.serve() as url, AsyncConvoso(fake.TOKEN, base_url=url) as convoso:
        result = await convoso.campaigns.set_status_many(["1001", "1002", "1003"], False)
        await convoso.campaigns.search()
    warnings = [m for m in kept if m.startswith("OpenTelemetry")]
    return {"succeeded": len(result.succeeded), "failed": len(result.failed), "warnings": warnings}

print(json.dumps(anyio.run(main)))
"""


def test_a_global_provider_that_cannot_be_built_fails_no_call() -> None:
    # OTEL_PYTHON_TRACER_PROVIDER naming a provider that does not load: the API raises at each
    # look-up of the global provider (a child process: the look-up's failure is for its life).
    done = subprocess.run(
        [sys.executable, "-c", _BROKEN_PROVIDER_CHILD],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["succeeded"] == 3
    assert answer["failed"] == 0
    (warning,) = answer["warnings"]
    assert "OTEL_PYTHON_*_PROVIDER" in warning
