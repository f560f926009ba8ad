"""A provider's rate limits, shared by every process through Redis.

Each limit is a Generic Cell Rate Algorithm (GCRA) bucket held as one number in Redis, its
"theoretical arrival time": a call reserves its turn atomically (a Lua script on Redis's
clock, so the hosts' clocks do not matter) and learns how long to wait for it. Callers
therefore queue in order instead of polling, and a burst of callers is spread out rather
than refused and retried together.

- requests: one turn every `1 / requests_per_second` seconds, with up to one second's
  worth of calls at once;
- tokens: a bucket of `tokens_per_minute` tokens refilled continuously; a call takes its
  estimated tokens, and `settle` gives back (or takes) the difference once the provider
  has said what the call really used;
- pause: after a 429, every process waits until the provider's Retry-After has passed.

A limit that is None costs nothing; the pause is always asked."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from bulkops.constants import provider_key

# KEYS: requests, tokens, pause. ARGV: request interval, request burst (both seconds; 0:
# no request limit), the call's token cost and the token bucket (both seconds; bucket 0:
# no token limit). Returns the seconds to wait for the turn it reserved.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local bucket = tonumber(ARGV[4])
local start = now
local pause = tonumber(redis.call('GET', KEYS[3]) or '0')
if pause > start then start = pause end
local req_tat = 0
if interval > 0 then
  req_tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if req_tat + interval - burst > start then start = req_tat + interval - burst end
end
local tok_tat = 0
if bucket > 0 then
  tok_tat = tonumber(redis.call('GET', KEYS[2]) or '0')
  if tok_tat + cost - bucket > start then start = tok_tat + cost - bucket end
end
if interval > 0 then
  local tat = math.max(req_tat, start) + interval
  redis.call('SET', KEYS[1], string.format('%.6f', tat),
    'PX', math.ceil((tat - now) * 1000) + 1000)
end
if bucket > 0 and cost > 0 then
  local tat = math.max(tok_tat, start) + cost
  redis.call('SET', KEYS[2], string.format('%.6f', tat),
    'PX', math.ceil((tat - now) * 1000) + 1000)
end
return string.format('%.6f', start - now)
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

# KEYS: tokens. ARGV: seconds of tokens to add (negative: give back).
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
        self._acquire = redis.register_script(_ACQUIRE)
        self._pause = redis.register_script(_PAUSE)
        self._settle = redis.register_script(_SETTLE)

    async def reserve(
        self,
        provider: str,
        *,
        requests_per_second: float | None,
        tokens_per_minute: int | None,
        tokens: int,
    ) -> float:
        """Reserve the next turn of a call taking `tokens`; the seconds until it comes."""
        interval = burst = 0.0
        if requests_per_second:
            interval = 1.0 / requests_per_second
            burst = max(1.0, requests_per_second) * interval
        cost = bucket = 0.0
        if tokens_per_minute:
            bucket = 60.0
            # A call larger than the whole bucket waits for a full bucket, not forever.
            cost = min(bucket, max(0, tokens) * 60.0 / tokens_per_minute)
        waited = await self._acquire(
            keys=_keys(provider, "requests", "tokens", "pause"),
            args=[repr(interval), repr(burst), repr(cost), repr(bucket)],
        )
        return _seconds(waited)

    async def pause(self, provider: str, seconds: float) -> float:
        """Make every process wait `seconds` before its next call to `provider` (a wait
        already longer stays); the seconds left of the pause."""
        left = await self._pause(keys=_keys(provider, "pause"), args=[repr(max(0.0, seconds))])
        return _seconds(left)

    async def pause_left(self, provider: str) -> float:
        return await self.pause(provider, 0.0)

    async def settle(self, provider: str, *, tokens_per_minute: int | None, tokens: int) -> None:
        """Take `tokens` more from the bucket (fewer when negative)."""
        if not tokens_per_minute or tokens == 0:
            return
        await self._settle(
            keys=_keys(provider, "tokens"), args=[repr(tokens * 60.0 / tokens_per_minute)]
        )


def _keys(provider: str, *parts: str) -> list[str]:
    return [provider_key(provider, part) for part in parts]


def _seconds(value: Any) -> float:
    if isinstance(value, bytes):
        value = value.decode()
    return max(0.0, float(value))
