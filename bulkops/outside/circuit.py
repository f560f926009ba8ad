"""A circuit breaker per provider, shared by every process through Redis: while a provider
is down, calls stop at once (ProviderUnavailable) instead of each item spending its
retries and failing.

- closed: calls go through. Consecutive failures that say the provider is down
  (connection errors, timeouts, 502/503/504 and 52x answers; see `retries.Failure.down`)
  are counted; any other answer resets the count, as does a minute without a failure.
  `Limits.failures_to_open` of them in a row open the circuit.
- open: every call is refused until the cool-down ends: `Limits.open_seconds` the first
  time, doubling each time it opens again without having closed, up to
  `MAX_OPEN_SECONDS`.
- half-open: after the cool-down one call, of any process, is let through as a probe (the
  others are still refused, and told to ask again within `PROBE_RECHECK_SECONDS`: the
  probe's answer may close the circuit any moment). An answer closes the circuit; a
  failure opens it again.

The state is one Redis hash per provider and a probe key that expires, so a probe whose
process died frees the way after the call's timeout."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from redis.asyncio import Redis

from bulkops.constants import provider_key
from bulkops.outside.errors import ProviderUnavailable

log = logging.getLogger(__name__)

MAX_OPEN_SECONDS = 300.0
# Failures further apart than this are not counted as in a row.
FAILURE_WINDOW_SECONDS = 60.0
# While a probe is out, how soon the calls refused meanwhile ask again (the probe itself
# holds the way for up to a call's timeout).
PROBE_RECHECK_SECONDS = 1.0

# KEYS: circuit, probe. ARGV: milliseconds a probe holds the way, seconds after which a
# call refused while a probe is out asks again. Returns {state, seconds until it is worth
# asking again, reason}; state is closed, open or probe.
_CHECK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local open_until = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if open_until == 0 then return {'closed', '0', ''} end
local reason = redis.call('HGET', KEYS[1], 'reason') or ''
if now < open_until then
  return {'open', string.format('%.3f', open_until - now), reason}
end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then
  return {'probe', '0', reason}
end
local left = math.max(redis.call('PTTL', KEYS[2]), 0) / 1000
return {'open', string.format('%.3f', math.min(left, tonumber(ARGV[2]))), reason}
"""

# KEYS: circuit, probe. ARGV: outcome (alive, down, neutral), whether the call was the
# probe (1/0), failures to open, first cool-down, longest cool-down, failure window
# (seconds), reason. Returns {seconds left of the cool-down (0: not open), 1 if this call
# opened or closed the circuit}.
_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local outcome = ARGV[1]
local probe = ARGV[2] == '1'
local open_until = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
local function open()
  local opens = redis.call('HINCRBY', KEYS[1], 'opens', 1)
  local cool = math.min(tonumber(ARGV[5]), tonumber(ARGV[4]) * 2 ^ (opens - 1))
  redis.call('HSET', KEYS[1], 'until', string.format('%.6f', now + cool), 'reason', ARGV[7])
  redis.call('HDEL', KEYS[1], 'failures')
  redis.call('PEXPIRE', KEYS[1], math.ceil((cool + 3600) * 1000))
  redis.call('DEL', KEYS[2])
  return {string.format('%.3f', cool), 1}
end
if outcome == 'alive' then
  if probe then
    redis.call('DEL', KEYS[1], KEYS[2])
    return {'0', 1}
  end
  redis.call('HDEL', KEYS[1], 'failures')
elseif outcome == 'down' then
  if probe then return open() end
  if open_until > now then
    return {string.format('%.3f', open_until - now), 0}
  end
  local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
  if open_until == 0 then
    redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[6]) * 1000))
  end
  if failures >= tonumber(ARGV[3]) then return open() end
elseif probe then
  redis.call('DEL', KEYS[2])
end
return {'0', 0}
"""


class Outcome(Enum):
    """What an attempt says about the provider."""

    ALIVE = "alive"  # it answered (any answer but a "down" one)
    DOWN = "down"
    NEUTRAL = "neutral"  # nothing (the call never reached it)


class Circuit:
    """Every provider's circuit, over one Redis connection pool."""

    def __init__(self, redis: Redis) -> None:
        self._check = redis.register_script(_CHECK)
        self._record = redis.register_script(_RECORD)

    async def enter(self, provider: str, *, probe_seconds: float) -> bool:
        """Before an attempt: raises ProviderUnavailable while the circuit is open; True
        when this attempt is the half-open circuit's probe."""
        state, left, reason = await self._check(
            keys=_keys(provider),
            args=[str(int(probe_seconds * 1000) + 1), repr(PROBE_RECHECK_SECONDS)],
        )
        state = _text(state)
        if state == "open":
            raise unavailable(provider, _text(reason), float(left))
        return state == "probe"

    async def record(
        self,
        provider: str,
        outcome: Outcome,
        *,
        probe: bool,
        failures_to_open: int,
        open_seconds: float,
        reason: str,
    ) -> float:
        """After an attempt; returns the seconds left of the cool-down when the circuit
        is open now (0.0 when it is not)."""
        left, changed = await self._record(
            keys=_keys(provider),
            args=[
                outcome.value,
                "1" if probe else "0",
                str(failures_to_open),
                repr(open_seconds),
                repr(MAX_OPEN_SECONDS),
                repr(FAILURE_WINDOW_SECONDS),
                reason,
            ],
        )
        left = float(left)
        if int(changed):
            if left > 0:
                log.warning(
                    "calls to %s stop for %.0f s: it looks down (%s)", provider, left, reason
                )
            else:
                log.info("calls to %s go through again", provider)
        return left


def unavailable(provider: str, reason: str, left: float) -> ProviderUnavailable:
    next_try_at = time.time() + left
    at = datetime.fromtimestamp(next_try_at, UTC).strftime("%H:%M:%S")
    why = f" ({reason})" if reason else ""
    return ProviderUnavailable(
        provider, f"{provider} unavailable{why}, next try {at} UTC", next_try_at=next_try_at
    )


def _keys(provider: str) -> list[str]:
    return [provider_key(provider, "circuit"), provider_key(provider, "probe")]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
