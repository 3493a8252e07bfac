"""Every default of the client, named once.

The client, the retry policy and the CLI read these; change a default here
and it changes everywhere.
"""

from __future__ import annotations

#: Convoso's public API root. Paths such as ``/campaigns/search`` are appended.
DEFAULT_BASE_URL = "https://api.convoso.com/v1"

#: Environment variables the client reads when an argument is not given.
ENV_AUTH_TOKEN = "CONVOSO_AUTH_TOKEN"
ENV_BASE_URL = "CONVOSO_BASE_URL"
ENV_LOG = "CONVOSO_LOG"

#: Seconds allowed for each HTTP attempt as a whole (sending, waiting, reading the answer).
DEFAULT_TIMEOUT = 30.0

#: Retries after the first attempt; 0 disables retrying.
DEFAULT_MAX_RETRIES = 3

#: Status requests in flight at once in bulk work; also the connection pool size.
DEFAULT_MAX_CONCURRENCY = 8

#: Backoff before retry n (1-based) is uniform in [0, min(cap, initial * 2**(n-1))].
RETRY_INITIAL_BACKOFF = 0.5
RETRY_MAX_BACKOFF = 8.0

#: The longest `Retry-After` honoured, in seconds; longer (or garbage) answers are capped.
RETRY_AFTER_CAP = 60.0

#: HTTP statuses worth another attempt: rate limited, or a failure in front of Convoso.
RETRYABLE_STATUS_CODES = frozenset({429, 500, 502, 503, 504})

#: ``rate_limit="auto"``: the rate it starts from (requests per second). Convoso
#: publishes no limit; 10/s is polite for any account and the adaptive limiter
#: doubles it every couple of seconds until the first 429 says where the limit is.
AUTO_RATE_START = 10.0

#: ``rate_limit="auto"``: the slowest and fastest it will ever pace (requests per second).
AUTO_RATE_FLOOR = 0.5
AUTO_RATE_CEILING = 1000.0
