"""A FastAPI backend that keeps one `AsyncConvoso` for its whole life.

The client is made once, in the app's lifespan, so every request shares its
connection pool, its rate limiter and its 429 pause; it is closed at shutdown.
Run it from the project root (``pip install fastapi uvicorn`` first)::

    CONVOSO_AUTH_TOKEN=... uvicorn examples.fastapi_app:app
    curl 'http://127.0.0.1:8000/campaigns?active=true'
    curl -X POST http://127.0.0.1:8000/campaigns/bulk-status -H 'Content-Type: application/json' \\
         -d '{"campaign_ids": ["111", "222"], "active": false, "skip_unchanged": true}'

No account? ``python -m convoso_async.testing --port 8001`` serves a fake
Convoso; start the app with ``CONVOSO_AUTH_TOKEN=test-token
CONVOSO_BASE_URL=http://127.0.0.1:8001/v1``. ``CONVOSO_RATE_LIMIT=10`` paces
this process to 10 requests a second.

Several worker processes (``uvicorn --workers 4``) each make their own client,
and a per-process limit would let the account see four times the rate. Give
every worker one shared budget instead: pass
``rate_limit=RedisRateLimiter("redis://127.0.0.1:6379/0", rate=10)`` (from
``convoso_async.redis_limiter``) in a `create_app` ``client_factory``.

Tracing is on when OpenTelemetry is installed (``pip install 'convoso-async[otel]'
opentelemetry-sdk``): each request of the app is a SERVER span, and the library's spans
(the bulk call, each API call, each HTTP attempt) are its children, with no code of
ours. The app only opens the request's span; the application (not the library)
chooses the exporter: ``CONVOSO_EXAMPLE_TRACES=console`` prints every span to stdout,
and under ``opentelemetry-instrument`` the exporter configured there receives them.

Models and results go out through their ``to_dict()``: plain JSON types, the
same shape as the CLI's ``--json``, so FastAPI encodes them as they are (an
attrs model returned directly would not serialise). The bulk endpoint answers
200 when every campaign succeeded and 207 (multi-status) when some failed,
with the outcome of each. Convoso failing outright (a rejected token, an
outage) is a 502: the fault is upstream, not the caller's. Bodies are
validated before anything is sent (422).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, StringConstraints

from convoso_async import AsyncConvoso, AuthenticationError, ConfigurationError, ConvosoError

try:  # the otel extra: with it, every request is a span holding the library's spans
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, TracerProvider
except ImportError:  # pragma: no cover - the app runs untraced
    trace = None  # type: ignore[assignment]

ClientFactory = Callable[[], AsyncConvoso]
#: Bounds one request's work; larger jobs belong in a queue, not an HTTP call.
MAX_IDS = 10_000
CampaignId = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1)]


class BulkStatusRequest(BaseModel):
    """Body of ``POST /campaigns/bulk-status``; strict, so ``"false"`` can't mean true."""

    model_config = ConfigDict(extra="forbid")  # a typo'd option must not be ignored
    campaign_ids: list[CampaignId] = Field(min_length=1, max_length=MAX_IDS)
    active: StrictBool
    skip_unchanged: StrictBool = False
    dry_run: StrictBool = False


def client_from_env() -> AsyncConvoso:
    """The client from CONVOSO_AUTH_TOKEN, CONVOSO_BASE_URL and CONVOSO_RATE_LIMIT."""
    rate = os.environ.get("CONVOSO_RATE_LIMIT", "").strip()
    try:
        return AsyncConvoso(rate_limit=float(rate) if rate else None)
    except ValueError:
        raise ConfigurationError(
            f"CONVOSO_RATE_LIMIT must be requests per second, not {rate!r}"
        ) from None


def get_convoso(request: Request) -> AsyncConvoso:
    """The app's one client, made by the lifespan."""
    convoso: AsyncConvoso = request.app.state.convoso
    return convoso


Convoso = Annotated[AsyncConvoso, Depends(get_convoso)]


def console_tracing() -> None:
    """Print every span to stdout: the application's choice of exporter, made here.

    The SDK, not the API: ``pip install opentelemetry-sdk``.
    """
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    provider = SdkTracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)


def trace_requests(app: FastAPI, tracer_provider: TracerProvider | None = None) -> None:
    """Run every request of ``app`` in a SERVER span: the parent of the library's spans."""
    tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    @app.middleware("http")
    async def traced(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        name = f"{request.method} {request.url.path}"
        attributes = {"http.request.method": request.method, "url.path": request.url.path}
        with tracer.start_as_current_span(
            name, kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            response = await call_next(request)
            span.set_attribute("http.response.status_code", response.status_code)
            return response


def create_app(
    client_factory: ClientFactory | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """The app; ``client_factory`` (default: `client_from_env`) makes its one client.

    ``tracer_provider``: the request spans' (default: OpenTelemetry's global one).
    """
    make_client = client_factory or client_from_env

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with make_client() as convoso:
            app.state.convoso = convoso
            yield

    app = FastAPI(title="Convoso campaigns", lifespan=lifespan)
    if trace is not None:
        trace_requests(app, tracer_provider)

    @app.exception_handler(ConvosoError)
    async def upstream_failed(request: Request, error: Exception) -> JSONResponse:
        # Messages never carry the token (a library guarantee), so they can be shown.
        message = str(error)
        if isinstance(error, AuthenticationError):
            message = f"this service's Convoso token was rejected: {message}"
        return JSONResponse({"error": type(error).__name__, "message": message}, status_code=502)

    @app.get("/campaigns")
    async def list_campaigns(convoso: Convoso, active: bool | None = None) -> list[dict[str, Any]]:
        """Every campaign (``Campaign.to_dict()``), or only the active or inactive ones."""
        return [
            c.to_dict()
            for c in await convoso.campaigns.search()
            if active is None or c.is_active == active
        ]

    @app.post("/campaigns/bulk-status")
    async def bulk_status(body: BulkStatusRequest, convoso: Convoso) -> JSONResponse:
        """Set every listed campaign to ``active``: ``BatchResult.to_dict()``, 207 if any failed."""
        result = await convoso.campaigns.set_status_many(
            body.campaign_ids,
            body.active,
            skip_unchanged=body.skip_unchanged,
            dry_run=body.dry_run,
        )
        return JSONResponse(result.to_dict(), status_code=200 if result.ok else 207)

    return app


if os.environ.get("CONVOSO_EXAMPLE_TRACES") == "console":
    console_tracing()
app = create_app()
