"""A provider's rate limits, shared by every process through Redis, fair between tenants.

Callers wait for their turn rather than fail. A turn is reserved atomically by a Lua
script, on Redis's clock (so the hosts' clocks do not matter), and the caller sleeps until
it; callers are therefore served in order instead of polling, and a burst of them is
spread out rather than refused and retried together. The `limits` package only answers
"may I, now?" (a moving window: no reservation of a later turn, nothing given back), hence
the script.

- requests: time is cut into slots of `(1 s + JITTER_SECONDS) / requests_per_second`, one
  call per slot, so no one-second window ever holds more calls than the rate allows, even
  as the provider sees them, each a few milliseconds late or early. A call books the first
  free slot from its tenant's next turn on, at most `HORIZON_SECONDS` (or two slots)
  ahead. Fair share: each tenant's turns come at `active tenants / rate` apart, where a
  tenant is active while it has a turn booked or due; a tenant alone has the whole rate.
  A caller whose turn is past the horizon books nothing and comes back when it nears, so
  a big job's callers cannot book every slot of the next minutes: a small job of another
  tenant waits at most the horizon, then takes every other turn.
- tokens: a bucket of `tokens_per_minute` tokens refilled continuously (a Generic Cell
  Rate Algorithm: one number in Redis); a call takes its estimated tokens, and `settle`
  gives back (or takes) the difference once the provider has said what it used.
- pause: after a 429, no process calls the provider until its Retry-After has passed.

A limit that is None costs nothing; the pause is always asked."""

from __future__ import annotations

import math
from typing import Any

from redis.asyncio import Redis

from bulkops.constants import provider_key

# How far ahead a call may book its turn: what a newcomer waits at most behind the calls
# booked before it came.
HORIZON_SECONDS = 0.25
# The slack kept between a call and the one `requests_per_second` calls later, beyond the
# second between them: without it a provider counting a sliding one-second window sees
# the later call a fraction of a millisecond too early about once a second (the calls'
# own timing varies that much on the way) and answers 429.
JITTER_SECONDS = 0.02

# KEYS: slots (sorted set of booked slot numbers), tenants (sorted set of each active
# tenant's next turn), the tenant's comeback time, tokens, pause. ARGV: slot length (0: no
# request limit), horizon (slots), the call's token cost and the token bucket (both in
# seconds of refill; bucket 0: no token limit), the tenant. Returns {1, seconds until the
# booked turn} or {0, seconds until it is worth asking again}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local slot = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local bucket = tonumber(ARGV[4])
local tenant = ARGV[5]
local function keep(key, until_)
  local ms = math.ceil((until_ - now) * 1000) + 1000
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
local start = now
local pause = tonumber(redis.call('GET', KEYS[5]) or '0')
if pause > start then start = pause end
local tok_tat = 0
if bucket > 0 then
  tok_tat = tonumber(redis.call('GET', KEYS[4]) or '0')
  if tok_tat + cost - bucket > start then start = tok_tat + cost - bucket end
end
local at = start
if slot > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local mine = tonumber(redis.call('ZSCORE', KEYS[2], tenant) or '0')
  local active = redis.call('ZCARD', KEYS[2])
  if mine == 0 then active = active + 1 end
  local pace = slot * active
  if mine > start then start = mine end
  local first = math.ceil(start / slot - 1e-6)
  local last = math.floor(now / slot) + horizon
  if first <= last then
    for _, booked in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], first, last)) do
      local n = tonumber(booked)
      if n == first then first = first + 1 elseif n > first then break end
    end
  end
  if first > last then
    -- Past the horizon: come back when the turn nears, after the tenant's other callers
    -- that came back before (one turn of the tenant apart).
    local back = math.max(tonumber(redis.call('GET', KEYS[3]) or '0'), (first - horizon) * slot)
    redis.call('SET', KEYS[3], string.format('%.6f', back + pace))
    keep(KEYS[3], back + pace)
    return {0, string.format('%.6f', math.max(back - now, slot / 2))}
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', math.floor(now / slot) - 1)
  redis.call('ZADD', KEYS[1], first, first)
  keep(KEYS[1], (last + 1) * slot)
  at = math.max(first * slot, now)
  redis.call('ZADD', KEYS[2], at + pace, tenant)
  keep(KEYS[2], at + pace)
end
if bucket > 0 and cost > 0 then
  local tat = math.max(tok_tat, at) + cost
  redis.call('SET', KEYS[4], string.format('%.6f', tat))
  keep(KEYS[4], tat)
end
return {1, string.format('%.6f', at - now)}
"""

# KEYS: pause. ARGV: seconds from now (0: only read). Returns the seconds left.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = now + tonumber(ARGV[1])
if wanted > current and tonumber(ARGV[1]) > 0 then
  redis.call('SET', KEYS[1], string.format('%.6f', wanted),
    'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
  current = wanted
end
return string.format('%.6f', math.max(0, current - now))
"""

# KEYS: tokens. ARGV: seconds of refill to add (negative: give back).
_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
tat = tat + tonumber(ARGV[1])
if tat > now then
  redis.call('SET', KEYS[1], string.format('%.6f', tat),
    'PX', math.ceil((tat - now) * 1000) + 1000)
else
  redis.call('DEL', KEYS[1])
end
return 1
"""


class SharedLimiter:
    """The limiter of every provider, over one Redis connection pool."""

    def __init__(self, redis: Redis) -> None:
        self._reserve = redis.register_script(_RESERVE)
        self._pause = redis.register_script(_PAUSE)
        self._settle = redis.register_script(_SETTLE)

    async def reserve(
        self,
        provider: str,
        *,
        tenant_id: str,
        requests_per_second: float | None,
        tokens_per_minute: int | None,
        tokens: int,
    ) -> tuple[bool, float]:
        """Book the next turn of `tenant_id`'s call taking `tokens`: (True, seconds until
        it), or (False, seconds after which to ask again: the turn is past the horizon)."""
        slot = horizon = 0.0
        if requests_per_second:
            slot = (1.0 + JITTER_SECONDS) / requests_per_second
            horizon = max(2, math.ceil(HORIZON_SECONDS * requests_per_second))
        cost = bucket = 0.0
        if tokens_per_minute:
            bucket = 60.0
            # A call larger than the whole bucket waits for a full bucket, not forever.
            cost = min(bucket, max(0, tokens) * 60.0 / tokens_per_minute)
        booked, seconds = await self._reserve(
            keys=[
                provider_key(provider, "slots"),
                provider_key(provider, "tenants"),
                provider_key(provider, f"comeback:{tenant_id}"),
                provider_key(provider, "tokens"),
                provider_key(provider, "pause"),
            ],
            args=[repr(slot), str(int(horizon)), repr(cost), repr(bucket), tenant_id],
        )
        return int(booked) == 1, _seconds(seconds)

    async def pause(self, provider: str, seconds: float) -> float:
        """Make every process wait `seconds` before its next call to `provider` (a wait
        already longer stays); the seconds left of the pause."""
        left = await self._pause(
            keys=[provider_key(provider, "pause")], args=[repr(max(0.0, seconds))]
        )
        return _seconds(left)

    async def pause_left(self, provider: str) -> float:
        return await self.pause(provider, 0.0)

    async def settle(self, provider: str, *, tokens_per_minute: int | None, tokens: int) -> None:
        """Take `tokens` more from the bucket (fewer when negative)."""
        if not tokens_per_minute or tokens == 0:
            return
        await self._settle(
            keys=[provider_key(provider, "tokens")], args=[repr(tokens * 60.0 / tokens_per_minute)]
        )


def _seconds(value: Any) -> float:
    if isinstance(value, bytes):
        value = value.decode()
    return max(0.0, float(value))
