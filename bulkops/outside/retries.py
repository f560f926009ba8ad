"""When to try a call again and how long to wait first, the way the providers' own SDKs do
it (OpenAI's and Anthropic's): timeouts, connection errors, 408, 409, 429 and 5xx are
tried again; the provider's `x-should-retry` header overrides that either way; the wait
is the provider's `retry-after-ms` or `Retry-After` (seconds or an HTTP date) when it
names one, up to `MAX_RETRY_AFTER_SECONDS`, else exponential backoff with full jitter
(AWS's "Exponential Backoff and Jitter": a random wait between zero and the cap, so that
clients that failed together do not come back together).

The attempts themselves are tenacity's (`policy`): stop after the attempt budget or once
the next wait would overrun the time budget, wait what the failed attempt was told. It is
tenacity rather than stamina (which wraps it) because each provider has its own policy
per call, and stamina's process-wide instrumentation would log every retry of a throttled
provider as a warning; tenacity's `wait_random_exponential` is full jitter as is."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass

import tenacity
from tenacity.stop import stop_base

# A provider asking for a longer wait gets this; the call's own budget
# (`Limits.max_retry_seconds`) decides whether waiting is still worth it.
MAX_RETRY_AFTER_SECONDS = 60.0

RETRYABLE_STATUSES = frozenset({408, 409, 429})
# Answers that say the provider itself is down or overloaded (a gateway's, a load
# balancer's, a CDN's 52x, Anthropic's 529), counted by the circuit. A plain 500 may be
# one item's doing, so it is tried again but does not count against the provider.
DOWN_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True)
class Failure:
    """One attempt that did not end in a 2xx answer."""

    # "status", "timeout" or "connection"
    kind: str
    message: str
    status: int | None = None
    retryable: bool = False
    # Says the provider is down (the circuit counts it) rather than the item's doing.
    down: bool = False
    # What the provider asked for (seconds), when it asked.
    retry_after: float | None = None

    @property
    def rate_limited(self) -> bool:
        return self.status == 429


def status_failure(status: int, headers: Mapping[str, str], message: str) -> Failure:
    retryable = status in RETRYABLE_STATUSES or status >= 500
    should = headers.get("x-should-retry", "").strip().lower()
    if should in ("true", "false"):
        retryable = should == "true"
    return Failure(
        kind="status",
        message=message,
        status=status,
        retryable=retryable,
        down=status in DOWN_STATUSES or status >= 520,
        retry_after=retry_after(headers),
    )


def timeout_failure(message: str) -> Failure:
    return Failure(kind="timeout", message=message, retryable=True, down=True)


def connection_failure(message: str) -> Failure:
    return Failure(kind="connection", message=message, retryable=True, down=True)


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The wait the provider asks for, in seconds (never negative), or None."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def delay_before(
    failure: Failure,
    state: tenacity.RetryCallState,
    *,
    backoff_seconds: float,
    max_backoff_seconds: float,
) -> float:
    """Seconds to wait after the failed attempt `state` is at."""
    if failure.retry_after is not None:
        return min(failure.retry_after, MAX_RETRY_AFTER_SECONDS)
    backoff = tenacity.wait_random_exponential(multiplier=backoff_seconds, max=max_backoff_seconds)
    return float(backoff(state))


class TryAgain(Exception):
    """An attempt failed in a way worth trying again: `policy` retries on it. It carries
    the wait decided for it (`delay`), what tenacity is to sleep of it (none when the
    wait is kept at the shared limiter) and the retry budget spent so far (`spent`)."""

    def __init__(self, failure: Failure, *, delay: float, sleep: float, spent: float) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.delay = delay
        self.sleep = sleep
        self.spent = spent


def policy(*, max_retries: int, max_retry_seconds: float) -> tenacity.AsyncRetrying:
    """The attempts of one call: another after each TryAgain, at most `max_retries` of
    them, and none whose wait would take the call past `max_retry_seconds`. Any other
    exception ends the call as it is; so does the last TryAgain (reraised)."""

    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(TryAgain),
        stop=tenacity.stop_any(
            tenacity.stop_after_attempt(max_retries + 1), _OverBudget(max_retry_seconds)
        ),
        wait=lambda state: _try_again(state).sleep,
        sleep=asyncio.sleep,
        reraise=True,
    )


class _OverBudget(stop_base):
    """Stop when the wait before the next attempt would overrun the call's time budget."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        last = _try_again(retry_state)
        return last.spent + last.delay > self.seconds


def _try_again(state: tenacity.RetryCallState) -> TryAgain:
    assert state.outcome is not None
    exc = state.outcome.exception()
    assert isinstance(exc, TryAgain)
    return exc
