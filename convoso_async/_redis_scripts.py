"""The shared limiter's two Lua scripts, the arguments they take and the replies they give.

`~convoso_async.redis_limiter.RedisRateLimiter` runs `ACQUIRE_SCRIPT` for each ``acquire()``
and `THROTTLE_SCRIPT` for each 429; how it reaches Redis is `~convoso_async._redis_connection`'s
concern. The adaptive rules are `~convoso_async._pacing.ratelimit`'s (``adaptive_rate``,
``decreased_rates``), written again in Lua so that Redis applies them on its own clock;
``tests/redis_script_model.py`` holds the scripts' Python model, and a property test runs both
side by side (`scripts_on_argument_clock` lets it set the time).

Both scripts: KEYS[1] the slot key (the TAT, the *theoretical arrival time* of the next
request), KEYS[2] the pause key (the end of the current 429 pause), KEYS[3] the adaptive state
(a hash), KEYS[4] the adaptive mode's grants of the last period (a sorted set). ARGV[1] is 1 in
adaptive mode, then: the seed rate and target (for a state Redis does not have), floor,
ceiling, period in µs, the state's TTL in ms, and the model's constants (in seconds); the
arguments of each script follow (`acquire_args`, `throttle_args`). Times are Redis server µs:
Lua numbers are doubles, exact up to 2**53 µs (year 2255). string.format keeps numbers out of
Lua's 14-digit %g form; replies are strings, since Redis would truncate a Lua float to an
integer.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from convoso_async._defaults import REDIS_ADAPTIVE_STATE_TTL
from convoso_async._pacing.ratelimit import (
    ADAPTIVE_DECREASE,
    ADAPTIVE_TARGET,
    DEEPEST_DROP,
    HOLD_SECONDS,
    PROBE_SECONDS,
    RECOVERY_SECONDS,
    SLOW_START_DOUBLING,
)
from convoso_async._redis_settings import RedisLimiterSettings

__all__ = [
    "ACQUIRE_SCRIPT",
    "THROTTLE_SCRIPT",
    "AcquireReply",
    "ThrottleReply",
    "acquire_args",
    "scripts_on_argument_clock",
    "throttle_args",
]

# Before Redis 5 a script that reads TIME and then writes must ask for effects replication.
_HEAD = """
if redis.replicate_commands then redis.replicate_commands() end
"""

#: Where the scripts' time comes from: the Redis server's clock.
_REDIS_CLOCK = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
"""

#: For tests only: the time, in µs, as the script's last argument.
_ARGUMENT_CLOCK = """
local now = tonumber(ARGV[#ARGV])
"""

_PRELUDE = """
local adaptive = ARGV[1] == '1'
local floor, ceiling = tonumber(ARGV[4]), tonumber(ARGV[5])
local period = tonumber(ARGV[6])
local recovery, hold, probe = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local doubling = tonumber(ARGV[11])
local function model(low, target, grown)
  local rate
  if target <= 0 then
    rate = low * 2 ^ math.min(grown / doubling, 64)
  elseif grown < recovery then
    rate = target - (target - low) * (1 - grown / recovery) ^ 3
  elseif grown - recovery - hold <= 0 then
    rate = target
  else
    rate = target * (1 + math.min((grown - recovery - hold) / probe, 1000) ^ 3)
  end
  return math.min(ceiling, math.max(floor, rate))
end
local low, target, grown, dropped
if adaptive then
  local state = redis.call('HMGET', KEYS[3], 'low', 'target', 'grown', 'dropped')
  low = tonumber(state[1]) or tonumber(ARGV[2])
  target = tonumber(state[2]) or tonumber(ARGV[3])
  grown = tonumber(state[3]) or 0
  dropped = tonumber(state[4]) or 0
  -- Keep the grants of the last period only: (now - period, now].
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', string.format('%.0f', now - period))
end
local function save()
  redis.call('HSET', KEYS[3], 'low', string.format('%.17g', low),
             'target', string.format('%.17g', target), 'grown', string.format('%.17g', grown),
             'dropped', string.format('%.0f', dropped))
  redis.call('PEXPIRE', KEYS[3], ARGV[7])
end
local pause = tonumber(redis.call('GET', KEYS[2]) or 0)
"""

# acquire(). ARGV[12]: growth earned by this process's answers since its last
# call, in µs; ARGV[13]: the fixed mode's interval in µs; ARGV[14]: burst - 1.
# Returns {µs to wait for the reserved slot, when it was reserved, the rate,
# the target}. The reservation time, not the slot's: a slot reserved before a
# drop was paced at the old rate even if it comes after the drop.
_ACQUIRE = """
local interval = tonumber(ARGV[13])
local rate = 0
if adaptive then
  if model(low, target, grown) < ceiling then grown = grown + tonumber(ARGV[12]) / 1e6 end
  rate = model(low, target, grown)
  interval = period / rate
  local stamp = string.format('%.0f', now)
  redis.call('ZADD', KEYS[4], stamp, stamp)
  redis.call('PEXPIRE', KEYS[4], string.format('%.0f', math.ceil(period / 1000)))
  save()
end
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat < pause then tat = pause end
local wait = tat - tonumber(ARGV[14]) * interval - now
if wait < pause - now then wait = pause - now end
if wait < 0 then wait = 0 end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat),
           'PX', string.format('%.0f', math.ceil((next_tat - now) / 1000)))
return {string.format('%.0f', wait), string.format('%.0f', now),
        string.format('%.17g', rate), string.format('%.17g', target or 0)}
"""

# on_throttle(). ARGV[12]: Retry-After in µs (-1: none); ARGV[13]: when the
# slot of the request that met the 429 was reserved (-1: unknown); ARGV[14],
# ARGV[15], ARGV[16]: the decrease and target factors and the deepest drop.
# Returns {µs of pause left, the rate before, the rate after, 1 if this 429
# lowered the rate, the target}.
_THROTTLE = """
local retry = tonumber(ARGV[12])
if retry >= 0 and now + retry > pause then
  pause = now + retry
  redis.call('SET', KEYS[2], string.format('%.0f', pause),
             'PX', string.format('%.0f', math.ceil(retry / 1000) + 1))
end
local rate, after, lowered = 0, 0, 0
if adaptive then
  rate = model(low, target, grown)
  after = rate
  local reserved = tonumber(ARGV[13])
  if reserved < 0 or reserved >= dropped then
    local decrease, factor = tonumber(ARGV[14]), tonumber(ARGV[15])
    local recent = redis.call('ZCARD', KEYS[4])
    local found = math.max(math.min(rate, recent), rate * tonumber(ARGV[16]))
    target = math.max(floor, found * factor)
    low = math.min(target, math.max(floor, rate * decrease))
    grown = 0
    dropped = now
    save()
    after = model(low, target, grown)
    lowered = 1
  end
end
local left = pause - now
if left < 0 then left = 0 end
return {string.format('%.0f', left), string.format('%.17g', rate),
        string.format('%.17g', after), lowered, string.format('%.17g', target or 0)}
"""

#: The acquire script, on the Redis server's clock.
ACQUIRE_SCRIPT = _HEAD + _REDIS_CLOCK + _PRELUDE + _ACQUIRE
#: The 429 script, on the Redis server's clock.
THROTTLE_SCRIPT = _HEAD + _REDIS_CLOCK + _PRELUDE + _THROTTLE


def scripts_on_argument_clock() -> tuple[str, str]:
    """The acquire and 429 scripts, reading the time (µs) from an extra last argument.

    For tests, which drive the clock; the scripts are otherwise the limiter's, line for line.
    """
    return (
        _HEAD + _ARGUMENT_CLOCK + _PRELUDE + _ACQUIRE,
        _HEAD + _ARGUMENT_CLOCK + _PRELUDE + _THROTTLE,
    )


def _common_args(
    settings: RedisLimiterSettings, seen: tuple[float, float]
) -> list[float | int | str]:
    """ARGV[1] to ARGV[11]: the mode, the seed (the rate and target last seen), the model."""
    rate, target = seen
    return [
        1 if settings.adaptive else 0,
        f"{rate!r}",
        f"{target!r}",
        f"{settings.floor or 0.0!r}",
        f"{settings.ceiling or 0.0!r}",
        f"{settings.period * 1e6!r}",
        REDIS_ADAPTIVE_STATE_TTL * 1000,
        RECOVERY_SECONDS,
        HOLD_SECONDS,
        PROBE_SECONDS,
        SLOW_START_DOUBLING,
    ]


def acquire_args(
    settings: RedisLimiterSettings, seen: tuple[float, float], credit_us: float
) -> list[float | int | str]:
    """`ACQUIRE_SCRIPT`'s arguments: ``credit_us`` is the growth earned since the last call."""
    extra = (credit_us, settings.interval_us, settings.burst - 1)
    return [*_common_args(settings, seen), *(f"{value!r}" for value in extra)]


def throttle_args(
    settings: RedisLimiterSettings, seen: tuple[float, float], retry_us: float, reserved_us: float
) -> list[float | int | str]:
    """`THROTTLE_SCRIPT`'s arguments: Retry-After and the slot's reservation, µs (-1: none)."""
    extra = (retry_us, reserved_us, ADAPTIVE_DECREASE, ADAPTIVE_TARGET, DEEPEST_DROP)
    return [*_common_args(settings, seen), *(f"{value!r}" for value in extra)]


@attrs.frozen
class AcquireReply:
    """What `ACQUIRE_SCRIPT` answered."""

    #: µs to wait for the reserved slot.
    wait_us: int
    #: When the slot was reserved, in Redis µs.
    reserved_us: int
    #: The adaptive rate and target (0 in fixed mode).
    rate: float
    target: float

    @classmethod
    def parse(cls, reply: Sequence[object]) -> AcquireReply:
        """The reply as Redis gives it: four strings (bytes, or str on a decoding client)."""
        return cls(int(_text(reply[0])), int(_text(reply[1])), _number(reply[2]), _number(reply[3]))


@attrs.frozen
class ThrottleReply:
    """What `THROTTLE_SCRIPT` answered."""

    #: µs of pause left.
    left_us: int
    #: The adaptive rate before and after this 429 (0 in fixed mode).
    before: float
    after: float
    #: Whether this 429 lowered the rate (False for one met by a slot reserved before a drop).
    lowered: bool
    target: float

    @classmethod
    def parse(cls, reply: Sequence[object]) -> ThrottleReply:
        """The reply as Redis gives it: strings, and an integer for ``lowered``."""
        return cls(
            int(_text(reply[0])),
            _number(reply[1]),
            _number(reply[2]),
            bool(int(_text(reply[3]))),
            _number(reply[4]),
        )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(value: object) -> float:
    return float(_text(value))
