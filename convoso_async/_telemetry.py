"""OpenTelemetry traces and metrics, when the application set OpenTelemetry up; nothing otherwise.

The library never configures a provider or an exporter, and never imports
``opentelemetry`` itself: it uses the API the application imported. Every
hook starts with `active()`, the one check on the hot path: a look in
``sys.modules`` (nobody imported the API: off, in about 0.05 µs) and, when it
was imported, the API's global providers compared by identity with the last
ones seen. The API's defaults (its proxies, its no-op providers) mean off:
`active()` returns None, and no span, attribute dict or instrument is made.

What it produces, per layer (the README lists them with their meaning):

- a ``POST`` span (kind CLIENT, OpenTelemetry's HTTP client conventions) for
  each HTTP attempt, whatever sends it, and the ``http.client.request.duration``
  histogram;
- an INTERNAL span per API call (``campaigns.search``, ``campaigns.status``)
  that the attempts are children of, with events for long rate-limit waits,
  429 pauses, retries, refused retries and breaker changes;
- a span per bulk call with the count of every bucket at its end, and the
  ``convoso.bulk.outcomes`` counter;
- counters of retries, 429s, refused retries and breaker changes; gauges of
  each adaptive limiter's rate and each circuit breaker's state.

The providers, tracers, spans, processors, meters and instruments are the
application's code, and telemetry must never fail a call: each step that calls
them runs inside a `_Boundary`. An exception there is logged once (a WARNING
naming the provider) and turns the telemetry off for those providers; the call
goes on with its own result. So does a `GeneratorExit` or `SystemExit` from a hook (no
generator of ours is being closed; an exporter giving up by exiting must not turn what the
server did into an exit). A cancellation or Ctrl-C goes through.

The token is in the request body only, and no body is ever recorded: the only
URL recorded is ``base_url + path``, which the client checked holds no query.
"""

from __future__ import annotations

import functools
import itertools
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from ._defaults import TELEMETRY_WAIT_EVENT
from ._log import logger
from ._version import __version__

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.metrics import (
        CallbackOptions,
        Histogram,
        Meter,
        MeterProvider,
        Observation,
    )
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = [
    "NOTHING",
    "NOT_OBSERVED",
    "Attempt",
    "BulkCall",
    "Telemetry",
    "active",
    "api_call",
    "breaker_changed",
    "bulk_call",
    "error_type",
    "event",
    "use_providers",
    "watch_breaker",
    "watch_limiter",
]

#: The instrumentation scope: what a backend shows as the source of the spans and metrics.
SCOPE = "convoso_async"
#: The HTTP conventions' advised buckets for ``http.client.request.duration`` (seconds).
DURATION_BUCKETS: Final = (
    0,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    2.5,
    5,
    7.5,
    10,
)
_MAX_DESCRIPTION = 300

_modules = sys.modules
#: What a hook of the application's may raise that the library takes as that hook failing
#: (`_Boundary`); anything else (a cancellation, Ctrl-C) is the call's and goes on.
_HOOK_FAILURES: Final = (Exception, GeneratorExit, SystemExit)
Attributes = dict[str, Any]


def error_type(error: BaseException) -> str:
    """``error.type`` of an exception: its class, qualified (``convoso_async.ServerError``)."""
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


@functools.lru_cache(maxsize=64)
def _server(url: str) -> tuple[str, int]:
    """``server.address`` and ``server.port`` of a URL (the scheme's port when it names none)."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _duration_histogram(meter: Meter) -> Histogram:
    """The request-duration histogram, with the semantic conventions' buckets as advice.

    The advice exists from opentelemetry-api 1.30; an application may hold an older API
    (imported for its own reasons, without this package's ``otel`` extra), and telemetry must
    never fail a call: there the histogram takes the SDK's default buckets.
    """
    name, unit, description = (
        "http.client.request.duration",
        "s",
        "Duration of HTTP client requests.",
    )
    try:
        return meter.create_histogram(
            name,
            unit=unit,
            description=description,
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
    except TypeError:
        return meter.create_histogram(name, unit=unit, description=description)


class _Instruments:
    """The metric instruments, made once per meter provider."""

    def __init__(self, meter: Meter) -> None:
        self.duration = _duration_histogram(meter)
        self.outcomes = meter.create_counter(
            "convoso.bulk.outcomes",
            unit="{campaign}",
            description="Campaigns of bulk calls, by the bucket each ended in.",
        )
        self.retries = meter.create_counter(
            "convoso.retries", unit="{retry}", description="HTTP attempts that were retries."
        )
        self.throttled = meter.create_counter(
            "convoso.throttled", unit="{response}", description="Answers HTTP 429 (rate limited)."
        )
        self.refusals = meter.create_counter(
            "convoso.retry_budget.refusals",
            unit="{retry}",
            description="Retries the retry budget refused (it was empty).",
        )
        self.transitions = meter.create_counter(
            "convoso.circuit_breaker.transitions",
            unit="{transition}",
            description="Circuit breaker state changes, by the state entered.",
        )
        meter.create_observable_gauge(
            "convoso.rate_limiter.rate",
            callbacks=[_observe_rates],
            unit="{request}/s",
            description="The current rate of each adaptive rate limiter.",
        )
        meter.create_observable_gauge(
            "convoso.circuit_breaker.state",
            callbacks=[_observe_breakers],
            unit="{breaker}",
            description="1 for the state each circuit breaker is in, 0 for the others.",
        )


#: What a `_Boundary` names when it reports: whose hook raised.
TRACES: Final = "tracer provider"
METRICS: Final = "meter provider"


class Telemetry:
    """The tracer and the instruments in force (either may be None), and whether they still work.

    ``on`` turns False, for good, the first time one of the application's hooks
    raises (`fail`): nothing more is asked of these providers, not even by the
    spans and measurements already under way.
    """

    __slots__ = ("instruments", "on", "providers", "tracer")

    def __init__(self, tracer_provider: object, meter_provider: object) -> None:
        self.tracer: Tracer | None = None
        self.instruments: _Instruments | None = None
        self.providers = {TRACES: tracer_provider, METRICS: meter_provider}
        self.on = True

    def guard(self, doing: str, signal: str = TRACES) -> _Boundary:
        """A ``with`` block around a call into ``signal``'s provider, ``doing`` a step."""
        return _Boundary(self, doing, signal)

    def fail(self, doing: str, signal: str, error: BaseException) -> None:
        """A hook raised: say so once, then record nothing more with these providers."""
        with _state.lock:
            if not self.on:
                return
            self.on = False
            if _state.telemetry is self:
                _state.telemetry = None
        provider = self.providers[signal]
        name = f"{type(provider).__module__}.{type(provider).__qualname__}"
        _report(
            doing,
            f"the {signal} {name}",
            error,
            "with these providers (until the application sets others)",
        )

    def attempt(self, url: str, number: int, campaign_id: str | None) -> Attempt | _Nothing:
        """The span and duration of one HTTP attempt (a ``with`` block around it)."""
        return Attempt(self, url, number, campaign_id) if self.on else NOTHING

    def waited(self, seconds: float, number: int) -> None:
        """The attempt waited ``seconds`` for the pause gate and the rate limiter."""
        if seconds >= TELEMETRY_WAIT_EVENT and self.tracer is not None and self.on:
            with self.guard("adding an event to a span"):
                _current_span().add_event(
                    "convoso.rate_limit.wait",
                    {"convoso.wait.seconds": seconds, "convoso.attempt": number},
                )

    def retrying(self, error: BaseException, retry_number: int, delay: float) -> None:
        """Retry ``retry_number`` goes after ``delay`` seconds, because of ``error``."""
        kind = _attempt_error(error)
        if self.instruments is not None and self.on:
            with self.guard("counting a retry", METRICS):
                self.instruments.retries.add(1, {"error.type": kind})
        if self.tracer is not None and self.on:
            with self.guard("adding an event to a span"):
                _current_span().add_event(
                    "convoso.retry",
                    {
                        "convoso.retry": retry_number,
                        "convoso.retry.delay": delay,
                        "error.type": kind,
                    },
                )


class _Boundary:
    """Where the library calls the application's OpenTelemetry: a `_HOOK_FAILURES` stops here.

    It turns the telemetry off (`Telemetry.fail`) and the block is left, the
    call it observes untouched. Anything else (a cancellation, Ctrl-C) goes on.
    """

    __slots__ = ("_doing", "_owner", "_signal")

    def __init__(self, owner: Telemetry, doing: str, signal: str) -> None:
        self._owner = owner
        self._doing = doing
        self._signal = signal

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if not isinstance(exc, _HOOK_FAILURES):
            return False
        self._owner.fail(self._doing, self._signal, exc)
        return True


def _report(doing: str, who: str, error: BaseException, until: str) -> None:
    """The one WARNING for telemetry that failed (``who`` raised ``error`` while ``doing``)."""
    try:
        message = str(error)[:_MAX_DESCRIPTION]
    except Exception:  # the application's exception, down to its __str__
        message = ""
    logger.warning(
        "OpenTelemetry failed while %s: %s raised %s%s. convoso_async records no more spans "
        "or metrics %s; its calls go on unaffected",
        doing,
        who,
        type(error).__name__,
        f" ({message})" if message else "",
        until,
        exc_info=error,
        extra={"telemetry_step": doing, "provider": who, "error": type(error).__name__},
    )


def _attempt_error(error: BaseException) -> str:
    """An attempt's ``error.type``: the HTTP status when one came (the HTTP conventions)."""
    status = getattr(error, "status_code", None)
    return str(status) if isinstance(status, int) and status >= 400 else error_type(error)


class Attempt:
    """One HTTP attempt: a CLIENT span named ``POST`` and one duration measurement."""

    __slots__ = ("_attributes", "_instruments", "_owner", "_span", "_started", "status_code")

    def __init__(self, observed: Telemetry, url: str, number: int, campaign_id: str | None) -> None:
        address, port = _server(url)
        self._attributes: Attributes = {
            "http.request.method": "POST",
            "server.address": address,
            "server.port": port,
        }
        self._owner = observed
        self._instruments = observed.instruments
        self._span: Span | None = None
        self.status_code = 0
        if observed.tracer is not None:
            attributes = {**self._attributes, "url.full": url}
            if number > 1:
                attributes["http.request.resend_count"] = number - 1
            if campaign_id is not None:
                attributes["convoso.campaign_id"] = campaign_id
            with observed.guard("starting a span"):
                self._span = observed.tracer.start_span(
                    "POST", kind=_api("trace").SpanKind.CLIENT, attributes=attributes
                )
        self._started = time.perf_counter()

    def answered(self, status_code: int) -> None:
        """The answer's status line came."""
        self.status_code = status_code
        if status_code == 429 and self._instruments is not None and self._owner.on:
            with self._owner.guard("counting a 429", METRICS):
                self._instruments.throttled.add(
                    1, {"server.address": self._attributes["server.address"]}
                )

    def paused(self, seconds: float) -> None:
        """The answer paused every request of the client for ``seconds`` (``Retry-After``)."""
        if self._span is not None and self._owner.on:
            with self._owner.guard("adding an event to a span"):
                _current_span().add_event(
                    "convoso.pause",
                    {
                        "convoso.pause.seconds": seconds,
                        "http.response.status_code": self.status_code,
                    },
                )

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._started
        attributes = self._attributes
        if self.status_code:
            attributes["http.response.status_code"] = self.status_code
        if exc is not None:
            attributes["error.type"] = (
                str(self.status_code) if self.status_code >= 400 else error_type(exc)
            )
        owner = self._owner
        if self._instruments is not None and owner.on:
            with owner.guard("recording a duration", METRICS):
                self._instruments.duration.record(elapsed, attributes)
        span = self._span
        if span is not None and owner.on:
            with owner.guard("ending a span"):
                if self.status_code:
                    span.set_attribute("http.response.status_code", self.status_code)
                if exc is not None:
                    span.set_attribute("error.type", attributes["error.type"])
                    _set_error(span, exc)
                span.end()


class _Nothing:
    """What a hook gives when telemetry is off: a ``with`` block that does nothing."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


NOTHING: Final = _Nothing()


class _Attached:
    """A ``with`` block in which ``context`` (a span's) is the current one."""

    __slots__ = ("_context", "_owner", "_token")

    def __init__(self, owner: Telemetry, context: Context) -> None:
        self._owner = owner
        self._context = context
        self._token: object = None

    def __enter__(self) -> None:
        self._token = _attach(self._owner, self._context)

    def __exit__(self, *exc_info: object) -> None:
        _detach(self._owner, self._token)


def _attach(owner: Telemetry, context: Context) -> object:
    """Make ``context`` current; the token to restore the one before (None: nothing changed)."""
    if owner.on:
        with owner.guard("making a span current"):
            token: object = _api("context").attach(context)
            return token
    return None


def _detach(owner: Telemetry, token: object) -> None:
    """Restore the context `_attach` replaced (even once telemetry is off: it is the caller's)."""
    if token is not None:
        with owner.guard("restoring the current span"):
            _api("context").detach(token)


class _ApiCall:
    """An API call's INTERNAL span, current while the call runs (its attempts are children)."""

    __slots__ = ("_owner", "_span", "_token")

    def __init__(self, owner: Telemetry, span: Span) -> None:
        self._owner = owner
        self._span = span
        self._token: object = None

    def __enter__(self) -> None:
        owner = self._owner
        if owner.on:
            with owner.guard("making a span current"):
                context = _api("trace").set_span_in_context(self._span)
                self._token = _attach(owner, context)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        owner = self._owner
        _detach(owner, self._token)
        if not owner.on:
            return
        with owner.guard("ending a span"):
            span = self._span
            if exc is None:
                span.set_attribute("convoso.outcome", "succeeded")
            else:
                cancelled = not isinstance(exc, Exception)
                span.set_attribute("convoso.outcome", "cancelled" if cancelled else "failed")
                span.set_attribute("error.type", error_type(exc))
                _set_error(span, exc)
            span.end()


def api_call(
    name: str,
    campaign_id: str | None = None,
    wanted_active: bool | None = None,
    *,
    endpoint: str | None = None,
) -> _ApiCall | _Nothing:
    """A ``with`` block for one API call: its span when tracing is on, else nothing.

    ``endpoint`` is the path of an endpoint called through ``post`` (``convoso.endpoint``).
    """
    observed = active()
    if observed is None or observed.tracer is None:
        return NOTHING
    attributes: Attributes = {}
    if endpoint is not None:
        attributes["convoso.endpoint"] = endpoint
    if campaign_id is not None:
        attributes["convoso.campaign_id"] = campaign_id
    if wanted_active is not None:
        attributes["convoso.wanted_active"] = wanted_active
    with observed.guard("starting a span"):
        return _ApiCall(observed, observed.tracer.start_span(name, attributes=attributes))
    return NOTHING


class BulkCall:
    """A bulk call's span and its outcome counts; `NOT_OBSERVED` when telemetry is off.

    ``with bulk:`` makes the span current in this task (its API calls are its
    children). A worker task that did not inherit that context enters
    `current` around its work. `finish` sets the counts and ends the span; an
    exception leaving the ``with`` block ends it too, as an error.
    """

    def __init__(
        self,
        name: str,
        attributes: Attributes,
        observed: Telemetry | None = None,
        *,
        counted: bool = True,
    ) -> None:
        self.name = name
        self._owner = observed
        self._instruments = None if observed is None or not counted else observed.instruments
        self._span: Span | None = None
        self._context: Context | None = None
        if observed is not None and observed.tracer is not None:
            with observed.guard("starting a span"):
                self._span = observed.tracer.start_span(name, attributes=attributes)
                self._context = _api("trace").set_span_in_context(self._span)
        self._tokens: list[object] = []
        self._finished = False

    def __enter__(self) -> BulkCall:
        if self._owner is not None and self._context is not None:
            self._tokens.append(_attach(self._owner, self._context))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._owner is not None and self._tokens:
            _detach(self._owner, self._tokens.pop())
        if exc is not None:
            self.finish({}, error=exc)

    def current(self) -> _Attached | _Nothing:
        """The span current in this task for a ``with`` block (a stream's worker, say)."""
        owner = self._owner
        if owner is None or self._context is None or not owner.on:
            return NOTHING
        return _Attached(owner, self._context)

    def finish(
        self,
        counts: Mapping[str, int],
        *,
        stopped_by: str | None = None,
        error: BaseException | None = None,
        extra: Attributes | None = None,
    ) -> None:
        """End the call: ``counts`` by bucket; ``stopped_by`` what stopped it early, if anything.

        ``error`` is the exception leaving the call (a cancellation: the batch was
        interrupted). Only the first call counts.
        """
        owner = self._owner
        if self._finished or owner is None:
            return  # ended already, or `NOT_OBSERVED` (shared: never changed)
        self._finished = True
        if self._instruments is not None and owner.on:
            with owner.guard("counting outcomes", METRICS):
                for bucket, count in counts.items():
                    if count and bucket != "planned":
                        self._instruments.outcomes.add(
                            count, {"convoso.outcome": bucket, "convoso.operation": self.name}
                        )
        if self._span is not None and owner.on:
            with owner.guard("ending a span"):
                self._end(self._span, counts, stopped_by, error, extra or {})

    @staticmethod
    def _end(
        span: Span,
        counts: Mapping[str, int],
        stopped_by: str | None,
        error: BaseException | None,
        extra: Attributes,
    ) -> None:
        for bucket, count in counts.items():
            span.set_attribute(f"convoso.bulk.{bucket}", count)
        for key, value in extra.items():
            span.set_attribute(key, value)
        if error is not None:
            span.set_attribute("convoso.bulk.stopped_by", stopped_by or "interrupted")
            span.set_attribute("error.type", error_type(error))
            _set_error(span, error)
        elif stopped_by is not None:
            span.set_attribute("convoso.bulk.stopped_by", stopped_by)
            span.set_status(_api("trace").StatusCode.ERROR, f"stopped early: {stopped_by}")
        span.end()


#: The bulk call when telemetry is off: every method does nothing.
NOT_OBSERVED: Final = BulkCall("", {})


def bulk_call(name: str, attributes: Attributes, *, counted: bool = True) -> BulkCall:
    """A bulk call's span (and, when ``counted``, its outcome counts); `NOT_OBSERVED` when off."""
    observed = active()
    if observed is None:
        return NOT_OBSERVED
    if observed.tracer is None and (observed.instruments is None or not counted):
        return NOT_OBSERVED
    return BulkCall(name, attributes, observed, counted=counted)


def event(name: str, attributes: Attributes, count: str | None = None) -> None:
    """An event on the current span; with ``count``, one more on that counter too."""
    observed = active()
    if observed is None:
        return
    if observed.tracer is not None:
        with observed.guard("adding an event to a span"):
            _current_span().add_event(name, attributes)
    if count is not None and observed.instruments is not None and observed.on:
        with observed.guard(f"counting {name}", METRICS):
            getattr(observed.instruments, count).add(1)


# -- breakers and limiters: their state changes, and the gauges that read them ----------------

_breakers: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_limiters: weakref.WeakKeyDictionary[Any, Attributes] = weakref.WeakKeyDictionary()
_BREAKER_STATES = ("closed", "open", "half-open")
# Numbers told apart in the gauges: each breaker and limiter of the process has its own.
_numbers = itertools.count(1)


# The SDK reads the gauges from its exporting thread: registrations and reads take turns.
_watch_lock = threading.Lock()


def watch_breaker(breaker: object) -> None:
    """Report ``breaker.state`` in the ``convoso.circuit_breaker.state`` gauge."""
    with _watch_lock:
        _breakers[breaker] = next(_numbers)


def watch_limiter(limiter: object, attributes: Attributes) -> None:
    """Report ``limiter.rate`` in the ``convoso.rate_limiter.rate`` gauge, with ``attributes``."""
    with _watch_lock:
        _limiters[limiter] = {**attributes, "convoso.rate_limiter.id": next(_numbers)}


def breaker_changed(breaker: object, state: str, attributes: Attributes) -> None:
    """A circuit breaker entered ``state``: an event on the current span, and the counter."""
    observed = active()
    if observed is None:
        return
    identity = _breakers.get(breaker, 0)
    if observed.instruments is not None:
        with observed.guard("counting a breaker's change", METRICS):
            observed.instruments.transitions.add(
                1, {"convoso.circuit_breaker.state": state, "convoso.circuit_breaker.id": identity}
            )
    if observed.tracer is not None and observed.on:
        name = "half_opened" if state == "half-open" else "opened" if state == "open" else state
        with observed.guard("adding an event to a span"):
            _current_span().add_event(
                f"convoso.circuit_breaker.{name}",
                {**attributes, "convoso.circuit_breaker.id": identity},
            )


def _observe_rates(options: CallbackOptions) -> Iterable[Observation]:
    observation = _api("metrics").Observation
    with _watch_lock:
        limiters = list(_limiters.items())
    return [observation(float(limiter.rate), dict(a)) for limiter, a in limiters]


def _observe_breakers(options: CallbackOptions) -> Iterable[Observation]:
    observation = _api("metrics").Observation
    points = []
    with _watch_lock:
        breakers = list(_breakers.items())
    for breaker, identity in breakers:
        now = breaker.state
        for state in _BREAKER_STATES:
            attributes = {
                "convoso.circuit_breaker.id": identity,
                "convoso.circuit_breaker.state": state,
            }
            points.append(observation(1 if state == now else 0, attributes))
    return points


# -- the one check, and what it compares against ----------------------------------------------


def _api(name: str) -> Any:
    """An OpenTelemetry API module the application imported (only called when it did)."""
    return _modules[f"opentelemetry.{name}"]


def _current_span() -> Span:
    span: Span = _api("trace").get_current_span()
    return span


def _set_error(span: Span, error: BaseException) -> None:
    # Messages never hold the token (the library's rule for every error it raises).
    description = str(error)[:_MAX_DESCRIPTION] or type(error).__name__
    span.set_status(_api("trace").StatusCode.ERROR, description)


class _State:
    """The providers last seen, and what they gave."""

    def __init__(self) -> None:
        self.tracer_provider: object = None
        self.meter_provider: object = None
        self.telemetry: Telemetry | None = None
        self.override: tuple[object, object] | None = None
        self.lookup_failed = False
        # Reentrant: a hook failing while the providers are resolved turns them off in there.
        self.lock = threading.RLock()

    def resolve(self, trace_api: Any, metrics_api: Any) -> Telemetry | None:
        override = self.override
        if override is not None:
            tracer_provider, meter_provider = override
        elif self.lookup_failed:
            return None
        else:
            try:
                tracer_provider = None if trace_api is None else trace_api.get_tracer_provider()
                meter_provider = None if metrics_api is None else metrics_api.get_meter_provider()
            except _HOOK_FAILURES as error:
                # The API builds a provider named by OTEL_PYTHON_TRACER_PROVIDER (or _METER_)
                # on each look-up until one loads: a broken one raises every time.
                self.lookup_failed = True
                _report(
                    "looking up the global providers",
                    "the OpenTelemetry API (a provider named by OTEL_PYTHON_*_PROVIDER?)",
                    error,
                    "in this process",
                )
                return None
        if tracer_provider is self.tracer_provider and meter_provider is self.meter_provider:
            return self.telemetry
        with self.lock:
            if tracer_provider is self.tracer_provider and meter_provider is self.meter_provider:
                return self.telemetry  # another thread got here first
            made = Telemetry(tracer_provider, meter_provider)
            with made.guard("getting a tracer"):
                made.tracer = _tracer(tracer_provider)
            if made.on:
                with made.guard("making the metric instruments", METRICS):
                    meter = _meter(meter_provider)
                    made.instruments = None if meter is None else _Instruments(meter)
            working = made.on and (made.tracer is not None or made.instruments is not None)
            self.telemetry = made if working else None
            self.tracer_provider, self.meter_provider = tracer_provider, meter_provider
            return self.telemetry


def _tracer(provider: Any) -> Tracer | None:
    trace_api = _modules.get("opentelemetry.trace")
    if provider is None or trace_api is None:
        return None
    if isinstance(provider, (trace_api.ProxyTracerProvider, trace_api.NoOpTracerProvider)):
        return None  # nothing configured: the API's own defaults
    tracer: Tracer = provider.get_tracer(SCOPE, __version__)
    return tracer


def _meter(provider: Any) -> Meter | None:
    metrics_api = _modules.get("opentelemetry.metrics")
    if provider is None or metrics_api is None:
        return None
    internal = _modules.get("opentelemetry.metrics._internal")
    unset = (metrics_api.NoOpMeterProvider, getattr(internal, "_ProxyMeterProvider", type(None)))
    if isinstance(provider, unset):
        return None
    meter: Meter = provider.get_meter(SCOPE, __version__)
    return meter


_state = _State()


def active() -> Telemetry | None:
    """The telemetry in force, or None: the one check every hook makes first.

    None unless the application imported the OpenTelemetry API and set a
    tracer or meter provider of its own (or `use_providers` gave some).
    """
    trace_api = _modules.get("opentelemetry.trace")
    metrics_api = _modules.get("opentelemetry.metrics")
    if trace_api is None and metrics_api is None:
        return None
    return _state.resolve(trace_api, metrics_api)


@contextmanager
def use_providers(
    tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
) -> Iterator[None]:
    """Use these providers instead of the global ones inside the block (tests; restores after).

    OpenTelemetry lets a process set its global providers once; a test suite
    wants fresh ones per test. None for either: that signal is off.
    """
    previous = _state.override
    _state.override = (tracer_provider, meter_provider)
    try:
        yield
    finally:
        _state.override = previous
