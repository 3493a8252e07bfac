"""Every default of the client, named once.

The client, the retry policy and the CLI read these; change a default here
and it changes everywhere.
"""

from __future__ import annotations

import platform

from ._version import __version__

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

#: The most ``max_concurrency`` may be: each request in flight holds a connection (a file
#: descriptor; 1,024 is a process's usual limit), and no account's rate limit needs more.
MAX_CONCURRENCY_LIMIT = 1000

#: The most ``max_retries`` may be: with the backoff capped at `RETRY_MAX_BACKOFF` seconds,
#: 100 retries already wait up to ~13 minutes, and the retry budget allows 50 in a burst.
MAX_RETRIES_LIMIT = 100

#: The most a count of requests may be (a breaker's failure threshold, a limiter's burst):
#: a million requests in a row is more than any account is allowed in a day.
MAX_REQUEST_COUNT = 1_000_000

#: The largest ``max_response_bytes`` (1 TiB): past it the cap means nothing.
MAX_RESPONSE_BYTES_LIMIT = 2**40

#: Backoff before retry n (1-based) is uniform in [0, min(cap, initial * 2**(n-1))].
RETRY_INITIAL_BACKOFF = 0.5
RETRY_MAX_BACKOFF = 8.0

#: The longest `Retry-After` honoured, in seconds; longer (or garbage) answers are capped.
RETRY_AFTER_CAP = 60.0

#: HTTP statuses worth another attempt: rate limited, or a failure in front of Convoso.
RETRYABLE_STATUS_CODES = frozenset({429, 500, 502, 503, 504})


#: What the client's own requests say they are, as peers do: the library and the
#: language, then the HTTP library in use (``convoso-async/0.1.0 python/3.11
#: httpx2/2.16.2``, or ``aiohttp/3.14.5`` with the opt-in). A caller's own
#: ``http_client`` keeps its own User-Agent.
USER_AGENT_PREFIX = (
    f"convoso-async/{__version__} python/{'.'.join(platform.python_version_tuple()[:2])}"
)
#: A retry budget (token bucket): retries a burst of failures may use, and the
#: share of a retry each success gives back. 0.5 allows one retry per two
#: successes in the long run; a 10% fault rate needs about one per nine.
RETRY_BUDGET_TOKENS = 50.0
RETRY_BUDGET_REFILL = 0.5

#: The circuit breaker opens after this many network failures, timeouts or
#: 5xx in a row with no success between them (the client's own breaker asks
#: for at least two rounds of ``max_concurrency``: requests in flight together
#: fail together when the service stalls), and probes again after
#: `BREAKER_COOLDOWN` seconds.
BREAKER_FAILURE_THRESHOLD = 10
BREAKER_COOLDOWN = 5.0
#: The largest answer read, in bytes, as sent and once decompressed; larger ends in
#: ResponseDecodeError. A 100,000-campaign search answer is about 14 MB.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: ``rate_limit="auto"``: the rate it starts from (requests per second). Convoso
#: publishes no limit; 10/s is polite for any account and the adaptive limiter
#: doubles it every couple of seconds until the first 429 says where the limit is.
AUTO_RATE_START = 10.0

#: ``rate_limit="auto"``: the slowest and fastest it will ever pace (requests per second).
AUTO_RATE_FLOOR = 0.5
AUTO_RATE_CEILING = 1000.0

#: The most requests per second a limiter (or ``rate_limit``) may be given: no HTTP
#: client sends more, so a larger rate is a mistake. ``period`` at most a year.
MAX_RATE = 1e6
MAX_PERIOD = 366 * 86400.0

#: Seconds an idle connection of the client's own pool is kept (httpx2's default).
KEEPALIVE_EXPIRY = 5.0

# -- the Redis limiter (convoso_async.redis_limiter re-exports these under its own names) --

#: The Redis key that holds the shared state, unless one is given.
REDIS_KEY = "convoso:ratelimit"
#: Seconds one ``acquire()`` may wait for Redis to answer.
REDIS_TIMEOUT = 2.0
#: Seconds between attempts to reach Redis again while the fallback paces.
REDIS_RETRY_INTERVAL = 5.0
#: How much longer than ``period`` the shared window is. A request leaves a
#: little after its slot (reply latency, event-loop and OS scheduling); the
#: slack keeps a late one from crowding into the next window. Measured on a
#: busy 2-core machine, 4 processes: lateness median 1 ms, worst 14 ms in 3 s,
#: so the in-process limiter's 1% (10 ms at 1 s) was exceeded in about one
#: run in three; 3% (30 ms) costs 3% of the rate.
REDIS_SLACK = 0.03
#: Seconds an adaptive key's learned rate is kept in Redis after its last use.
REDIS_ADAPTIVE_STATE_TTL = 86400

# -- the command line's demo (``convoso demo``) --

#: Campaigns on the demo's fake server, its mean answer delay (varied +-50%), and the
#: status requests the demo keeps in flight.
DEMO_CAMPAIGNS = 3000
DEMO_LATENCY = 0.02
DEMO_CONCURRENCY = 32

# -- OpenTelemetry (only when the application configured a provider) --

#: A wait for the pause gate and the rate limiter before an attempt at least this long
#: (seconds) becomes a ``convoso.rate_limit.wait`` event on the API call's span; shorter
#: waits are the pacing working as meant, and an event each would bury the others.
TELEMETRY_WAIT_EVENT = 0.5
