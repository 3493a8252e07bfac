"""convoso-async: an async Python client for the Convoso call-center API.

    from convoso_async import AsyncConvoso

    async with AsyncConvoso() as convoso:          # token from CONVOSO_AUTH_TOKEN
        campaigns = await convoso.campaigns.search()
        result = await convoso.campaigns.set_status_many(["111", "222"], False)
        result.raise_for_failures()

Works on asyncio and trio; `Convoso` is the same client for synchronous code.
See the README for retries, rate limits, bulk changes, any other endpoint
(``post``), the fake server (`convoso_async.testing`) and the ``convoso`` CLI.

Every public name is importable from here and reports ``convoso_async`` as its
module (as httpx's do), wherever it is defined (each defining module says so).
Names load on first use, so ``import convoso_async`` (and ``convoso --help``)
costs next to nothing until the client is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from ._bulk.changes import BatchProgress, BatchResult, StatusOutcome
    from ._client import AsyncConvoso
    from ._errors import (
        APIConnectionError,
        APIError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BatchError,
        CampaignNotFoundError,
        CircuitOpenError,
        ConfigurationError,
        ConvosoError,
        InvalidStatusError,
        NotSentError,
        PermissionDeniedError,
        RateLimitError,
        RateLimiterUnavailableError,
        ResponseDecodeError,
        ServerError,
        UnexpectedResponseError,
    )
    from ._models import Campaign, CampaignStatus, LastCallDate
    from ._pacing.breaker import CircuitBreaker, RetryBudget
    from ._pacing.ratelimit import AdaptiveLimiter, Limiter, RateLimiter
    from ._pacing.retry import set_testing
    from ._sync.client import Convoso
    from .schedule import Schedule, ScheduleError

#: Where each public name lives: loaded on first use.
_HOMES = {
    "APIConnectionError": "._errors",
    "APIError": "._errors",
    "APIStatusError": "._errors",
    "APITimeoutError": "._errors",
    "AdaptiveLimiter": "._pacing.ratelimit",
    "AsyncConvoso": "._client",
    "AuthenticationError": "._errors",
    "BatchError": "._errors",
    "BatchProgress": "._bulk.changes",
    "BatchResult": "._bulk.changes",
    "Campaign": "._models",
    "CampaignNotFoundError": "._errors",
    "CampaignStatus": "._models",
    "CircuitBreaker": "._pacing.breaker",
    "CircuitOpenError": "._errors",
    "ConfigurationError": "._errors",
    "Convoso": "._sync.client",
    "ConvosoError": "._errors",
    "InvalidStatusError": "._errors",
    "LastCallDate": "._models",
    "Limiter": "._pacing.ratelimit",
    "NotSentError": "._errors",
    "PermissionDeniedError": "._errors",
    "RateLimitError": "._errors",
    "RateLimiter": "._pacing.ratelimit",
    "RateLimiterUnavailableError": "._errors",
    "ResponseDecodeError": "._errors",
    "RetryBudget": "._pacing.breaker",
    "Schedule": ".schedule",
    "ScheduleError": ".schedule",
    "ServerError": "._errors",
    "StatusOutcome": "._bulk.changes",
    "UnexpectedResponseError": "._errors",
    "set_testing": "._pacing.retry",
}

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AdaptiveLimiter",
    "AsyncConvoso",
    "AuthenticationError",
    "BatchError",
    "BatchProgress",
    "BatchResult",
    "Campaign",
    "CampaignNotFoundError",
    "CampaignStatus",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConfigurationError",
    "Convoso",
    "ConvosoError",
    "InvalidStatusError",
    "LastCallDate",
    "Limiter",
    "NotSentError",
    "PermissionDeniedError",
    "RateLimitError",
    "RateLimiter",
    "RateLimiterUnavailableError",
    "ResponseDecodeError",
    "RetryBudget",
    "Schedule",
    "ScheduleError",
    "ServerError",
    "StatusOutcome",
    "UnexpectedResponseError",
    "__version__",
    "set_testing",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'convoso_async' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
