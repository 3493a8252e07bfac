"""convoso-async: an async Python client for the Convoso call-center API.

    >>> from convoso_async import AsyncConvoso
    >>> async with AsyncConvoso() as convoso:          # token from CONVOSO_AUTH_TOKEN
    ...     campaigns = await convoso.campaigns.search()
    ...     result = await convoso.campaigns.set_status_many(["111", "222"], False)
    ...     result.raise_for_failures()

Works on asyncio and trio. See the README for retries, rate limits, bulk
changes, the fake server (`convoso_async.testing`) and the ``convoso`` CLI.
"""

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
)
from ._models import Campaign, CampaignStatus, LastCallDate
from ._pacing.breaker import CircuitBreaker, RetryBudget
from ._pacing.ratelimit import AdaptiveLimiter, Limiter, RateLimiter
from ._pacing.retry import set_testing
from .schedule import Schedule, ScheduleError

__version__ = "0.1.0"

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
    "ConvosoError",
    "InvalidStatusError",
    "LastCallDate",
    "Limiter",
    "NotSentError",
    "PermissionDeniedError",
    "RateLimitError",
    "RateLimiterUnavailableError",
    "RateLimiter",
    "ResponseDecodeError",
    "RetryBudget",
    "Schedule",
    "ScheduleError",
    "ServerError",
    "StatusOutcome",
    "__version__",
    "set_testing",
]
