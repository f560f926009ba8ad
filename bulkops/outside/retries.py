"""When to try a call again and how long to wait first, the way the providers' own SDKs do
it (OpenAI's and Anthropic's): timeouts, connection errors, 408, 409, 429 and 5xx are
tried again; the provider's `x-should-retry` header overrides that either way; the wait
is the provider's `retry-after-ms` or `Retry-After` (seconds or an HTTP date) when it
names one, up to `MAX_RETRY_AFTER_SECONDS`, else exponential backoff with full jitter
(AWS's "Exponential Backoff and Jitter": a random wait between zero and the cap, so that
clients that failed together do not come back together)."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

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
    retry: int, failure: Failure, *, backoff_seconds: float, max_backoff_seconds: float
) -> float:
    """Seconds to wait before retry number `retry` (0 for the first retry)."""
    if failure.retry_after is not None:
        return min(failure.retry_after, MAX_RETRY_AFTER_SECONDS)
    return backoff(retry, base=backoff_seconds, cap=max_backoff_seconds)


def backoff(retry: int, *, base: float, cap: float) -> float:
    """Full jitter: uniform between zero and min(cap, base * 2**retry)."""
    return random.uniform(0.0, min(cap, base * 2.0 ** min(retry, 32)))
