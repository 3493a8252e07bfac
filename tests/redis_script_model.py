"""The shared limiter's two Lua scripts, as Python: what Redis holds for one key and answers.

`ScriptModel` takes the scripts' own arguments (`convoso_async._redis_scripts.acquire_args`,
``throttle_args``) and the time, and gives the replies the scripts give. The adaptive rules
come from `convoso_async._pacing.ratelimit` (``adaptive_rate``, ``decreased_rates``), the ones
the in-process `AdaptiveLimiter` follows, so a test that runs the model and the scripts side by
side checks the Lua against them. Key expiry is not modelled (the test makes every key
persistent after each call); `ScriptModel.ttls` holds the expiry, in ms, that the last call
gave each key it wrote.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from convoso_async._pacing.ratelimit import adaptive_rate, decreased_rates
from convoso_async._redis_scripts import AcquireReply, ThrottleReply

__all__ = ["ScriptModel"]

#: The indexes of the limiter's keys (``limiter_keys``): the slot, the pause, the state, grants.
TAT, PAUSE, STATE, GRANTS = range(4)


def rounded(value: float) -> float:
    """What ``string.format('%.0f', value)`` stores and ``tonumber`` reads back."""
    return float(f"{value:.0f}")


@dataclass
class _Call:
    """One script run's view of the state (the prelude's locals)."""

    now: int
    args: Sequence[object]
    low: float = 0.0
    target: float = 0.0
    grown: float = 0.0
    dropped: float = 0.0

    def arg(self, number: int) -> float:
        """ARGV[number] as ``tonumber`` reads it."""
        return float(str(self.args[number - 1]))

    @property
    def adaptive(self) -> bool:
        return str(self.args[0]) == "1"

    def model(self) -> float:
        """The Lua ``model()``: the adaptive rate, clamped to the floor and the ceiling."""
        rate = adaptive_rate(self.low, self.target, self.grown)
        return min(self.arg(5), max(self.arg(4), rate))


@dataclass
class ScriptModel:
    """Redis's state for one limiter key, and `acquire` / `throttle` as the scripts run them."""

    tat: float | None = None
    pause: float | None = None
    #: The adaptive hash: low, target, grown, dropped.
    state: tuple[float, float, float, float] | None = None
    #: The grants sorted set: member (the stamp) to score.
    grants: dict[str, float] = field(default_factory=dict)
    #: The expiry (ms) the last call set on each key it wrote, by key index.
    ttls: dict[int, int] = field(default_factory=dict)

    def _prelude(self, now: int, args: Sequence[object]) -> _Call:
        self.ttls = {}
        call = _Call(now, args)
        if call.adaptive:
            seed = (call.arg(2), call.arg(3), 0.0, 0.0)
            call.low, call.target, call.grown, call.dropped = self.state or seed
            cutoff = rounded(now - call.arg(6))
            self.grants = {m: s for m, s in self.grants.items() if s > cutoff}
        return call

    def _save(self, call: _Call) -> None:
        self.state = (call.low, call.target, call.grown, rounded(call.dropped))
        self.ttls[STATE] = int(call.arg(7))

    def acquire(self, now: int, args: Sequence[object]) -> AcquireReply:
        """ACQUIRE_SCRIPT at ``now`` (µs)."""
        call = self._prelude(now, args)
        pause = self.pause or 0.0
        interval, rate = call.arg(13), 0.0
        if call.adaptive:
            if call.model() < call.arg(5):
                call.grown += call.arg(12) / 1e6
            rate = call.model()
            interval = call.arg(6) / rate
            stamp = f"{now:.0f}"
            self.grants[stamp] = float(stamp)
            self.ttls[GRANTS] = math.ceil(call.arg(6) / 1000)
            self._save(call)
        tat = max(self.tat if self.tat is not None else now, now, pause)
        wait = max(tat - call.arg(14) * interval - now, pause - now, 0)
        next_tat = tat + interval
        self.tat = rounded(next_tat)
        self.ttls[TAT] = math.ceil((next_tat - now) / 1000)
        target = call.target if call.adaptive else 0.0
        return AcquireReply(int(rounded(wait)), now, rate, target)

    def throttle(self, now: int, args: Sequence[object]) -> ThrottleReply:
        """THROTTLE_SCRIPT at ``now`` (µs)."""
        call = self._prelude(now, args)
        pause = self.pause or 0.0
        retry = call.arg(12)
        if retry >= 0 and now + retry > pause:
            pause = now + retry
            self.pause = rounded(pause)
            self.ttls[PAUSE] = math.ceil(retry / 1000) + 1
        rate = after = 0.0
        lowered = False
        if call.adaptive:
            rate = after = call.model()
            reserved = call.arg(13)
            if reserved < 0 or reserved >= call.dropped:
                call.low, call.target = decreased_rates(rate, len(self.grants), call.arg(4))
                call.grown, call.dropped = 0.0, now
                self._save(call)
                after = call.model()
                lowered = True
        target = call.target if call.adaptive else 0.0
        return ThrottleReply(int(rounded(max(pause - now, 0))), rate, after, lowered, target)
