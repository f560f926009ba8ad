"""The attempts of one outside call, whatever it sends: how a provider may be called
(`Limits`), and its attempts until an answer, a failure for good, or a provider that is
down (run by the tenacity policy of `retries`).

One attempt, in order: the provider's circuit (refused at once while it is open), a place
among the process's `Limits.concurrency` calls in flight, a turn from the shared limiter
(the seconds waited are counted), then the request within `Limits.timeout_seconds` for
everything from connecting to the last byte read. After a failed attempt the circuit
hears of it, and the call is tried again after the wait `retries` decides, within the
call's retry budget; after a 429 that wait is kept at the shared limiter, by every
process (and counted as waiting for it).

Each attempt is counted in `bulkops_provider_calls_total` under its provider's family
(`fetch` for every `fetch:HOST`) with one of the outcomes ok, failed (the answer failed
the item), client_error, rate_limited, server_error, timeout, connection, or unavailable
(refused by the open circuit, never sent). Redis errors are not caught: without Redis
there is no shared limit to keep, and no queue for a worker either."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from redis.asyncio import Redis
from tenacity import RetryCallState

from bulkops import metrics
from bulkops.outside import retries
from bulkops.outside.circuit import Circuit, Outcome, unavailable
from bulkops.outside.errors import CallFailed, ProviderUnavailable
from bulkops.outside.limiter import SharedLimiter
from bulkops.outside.responses import failure_of, give_up
from bulkops.outside.usage import Usage

log = logging.getLogger(__name__)

T = TypeVar("T")

# A turn booked at most this far ahead is taken without asking Redis again for a 429 pause
# set meanwhile: the booking already waited out the pause known then, and a pause set in
# these few milliseconds is one the call would have missed anyway had its turn been at
# once (a call already sent is not called back either). A longer wait asks again once it
# is over. This spares a second Redis round trip per call while the rate is far from its
# limit (turns then come within a slot of being asked for).
RECHECK_PAUSE_AFTER_SECONDS = 0.01


@dataclass(frozen=True)
class Limits:
    """How one provider may be called, shared by every process: `requests_per_second` and
    `tokens_per_minute` (None: no limit) through the limiter in Redis, at most
    `concurrency` calls in flight per process and per run, each attempt within
    `timeout_seconds`, at most `max_retries` attempts after the first and
    `max_retry_seconds` in all before the call fails.

    Retries wait a random time up to `backoff_seconds * 2**retry` (at most
    `max_backoff_seconds`) unless the provider names a wait. `failures_to_open`
    failures in a row that say the provider is down open its circuit for `open_seconds`
    (doubling while it stays down); None: no circuit."""

    requests_per_second: float | None = None
    tokens_per_minute: int | None = None
    concurrency: int = 8
    timeout_seconds: float = 60.0
    max_retries: int = 5
    max_retry_seconds: float = 120.0
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0
    failures_to_open: int | None = 5
    open_seconds: float = 10.0


@dataclass(frozen=True)
class Call(Generic[T]):
    """One call to make: `send` makes one attempt of it, returning what the call returns
    or raising (an `Answered` for an answer that is not a 2xx)."""

    provider: str
    limits: Limits
    send: Callable[[], Awaitable[T]]
    tenant_id: str
    usage: Usage
    # Estimated tokens, taken from the provider's per-minute budget by the first attempt.
    tokens: int = 0
    # The CallFailed code of an answer that fails the call (retries spent, or a 4xx).
    failed_code: str = "PROVIDER_ERROR"
    # 404 and 410 fail as NOT_FOUND (a download).
    not_found: bool = False


@dataclass
class _Progress:
    """Where a call is: its retries so far, the seconds of its retry budget spent (attempts
    and the waits between them, not turns waited at the limiter), the tokens it took."""

    retry: int = 0
    spent: float = 0.0
    taken: int = 0


@dataclass(frozen=True)
class _Missed:
    """An attempt that failed in a way worth judging (maybe trying again)."""

    failure: retries.Failure
    probe: bool
    seconds: float


class Attempts:
    """Runs the attempts of every call of one process."""

    def __init__(self, redis: Redis) -> None:
        self.limiter = SharedLimiter(redis)
        self._circuit = Circuit(redis)
        self._slots = _Slots()

    async def run(self, call: Call[T]) -> T:
        """What the call returns, once an attempt answers. Raises CallFailed (the call
        failed for good) or ProviderUnavailable (the provider's circuit is open); either
        way the tokens the call took are given back."""
        progress = _Progress()
        try:
            return await self._attempts(call, progress)
        except Exception:
            if progress.taken:
                await self.limiter.settle(
                    call.provider,
                    tokens_per_minute=call.limits.tokens_per_minute,
                    tokens=-progress.taken,
                )
            raise

    async def _attempts(self, call: Call[T], progress: _Progress) -> T:
        limits = call.limits
        policy = retries.policy(
            max_retries=limits.max_retries, max_retry_seconds=limits.max_retry_seconds
        )
        try:
            async for attempt in policy:
                with attempt:
                    progress.retry = attempt.retry_state.attempt_number - 1
                    done = await self._once(call, progress)
                    if isinstance(done, _Missed):
                        raise await self._judge(call, done, progress, attempt.retry_state)
                    return done
        except retries.TryAgain as last:
            # Out of attempts, or of the time budget.
            raise give_up(
                call.provider, last.failure, failed_code=call.failed_code, not_found=call.not_found
            ) from None
        raise AssertionError("the retry policy ends with an answer or an exception")

    async def _once(self, call: Call[T], progress: _Progress) -> T | _Missed:
        probe = await self._enter(call.provider, call.limits)
        async with self._slots.hold(call.provider, call.limits.concurrency):
            if progress.retry == 0:
                await self._wait_turn(call, call.tokens)
                progress.taken = call.tokens
            else:
                await self._wait_turn(call, 0)
                call.usage.retries += 1
            call.usage.calls += 1
            started = time.monotonic()
            try:
                async with asyncio.timeout(call.limits.timeout_seconds):
                    result = await call.send()
            except CallFailed as exc:
                # The answer fails the item (too large, ...), or the request never left.
                heard = Outcome.ALIVE if exc.status is not None else Outcome.NEUTRAL
                await self._record(call, heard, probe=probe, label="failed")
                raise
            except Exception as exc:
                try:
                    failure = failure_of(exc, timeout_seconds=call.limits.timeout_seconds)
                except CallFailed:
                    # A URL httpx cannot send to, an answer it cannot decode.
                    await self._record(call, Outcome.NEUTRAL, probe=probe, label="failed")
                    raise
                if failure is None:
                    await self._record(call, Outcome.NEUTRAL, probe=probe, label="failed")
                    raise
                return _Missed(failure, probe, time.monotonic() - started)
        await self._record(call, Outcome.ALIVE, probe=probe, label="ok")
        return result

    async def _judge(
        self, call: Call[T], missed: _Missed, progress: _Progress, state: RetryCallState
    ) -> retries.TryAgain:
        """What follows a failed attempt: the TryAgain carrying the wait before the next
        one; raises when the call is not to be tried again (CallFailed) or the provider is
        down (ProviderUnavailable)."""
        failure, limits = missed.failure, call.limits
        progress.spent += missed.seconds
        if failure.rate_limited:
            call.usage.rate_limited += 1
        left = await self._record(
            call,
            Outcome.DOWN if failure.down else Outcome.ALIVE,
            probe=missed.probe,
            label=_label(failure),
            reason=failure.message,
        )
        if failure.down and left > 0:
            raise unavailable(call.provider, failure.message, left)
        delay = retries.delay_before(
            failure,
            state,
            backoff_seconds=limits.backoff_seconds,
            max_backoff_seconds=limits.max_backoff_seconds,
        )
        if failure.rate_limited:
            # Every process waits it out, whether this call tries again or not; this
            # call waits at the limiter, as the others do.
            await self.limiter.pause(call.provider, delay)
        log.debug(
            "attempt %d of a call to %s failed: %s",
            progress.retry + 1,
            call.provider,
            failure.message,
            extra={"tenant_id": call.tenant_id, "provider": call.provider},
        )
        if not failure.retryable:
            raise give_up(
                call.provider, failure, failed_code=call.failed_code, not_found=call.not_found
            )
        try_again = retries.TryAgain(
            failure,
            delay=delay,
            sleep=0.0 if failure.rate_limited else delay,
            spent=progress.spent,
        )
        progress.spent += delay
        return try_again

    async def _enter(self, provider: str, limits: Limits) -> bool:
        """Through the provider's circuit (ProviderUnavailable while it is open); whether
        this attempt is its probe."""
        if limits.failures_to_open is None:
            return False
        try:
            return await self._circuit.enter(provider, probe_seconds=limits.timeout_seconds + 5)
        except ProviderUnavailable:
            metrics.PROVIDER_CALLS.labels(_family(provider), "unavailable").inc()
            raise

    async def _wait_turn(self, call: Call[T], tokens: int) -> None:
        """Wait for a turn at the shared limiter (and out any 429 pause set meanwhile, when
        the turn was more than `RECHECK_PAUSE_AFTER_SECONDS` away)."""
        provider, limits, usage = call.provider, call.limits, call.usage
        waited = 0.0
        usage.waiting_now += 1
        try:
            while True:
                booked, wait = await self.limiter.reserve(
                    provider,
                    tenant_id=call.tenant_id,
                    requests_per_second=limits.requests_per_second,
                    tokens_per_minute=limits.tokens_per_minute,
                    tokens=tokens,
                )
                if wait > 0:
                    await asyncio.sleep(wait)
                    waited += wait
                if booked:
                    break
            if wait > RECHECK_PAUSE_AFTER_SECONDS:
                while (left := await self.limiter.pause_left(provider)) > 0:
                    await asyncio.sleep(left)
                    waited += left
        finally:
            usage.waiting_now -= 1
            if waited:
                usage.waited_seconds += waited
                metrics.PROVIDER_WAIT.labels(_family(provider)).inc(waited)

    async def _record(
        self, call: Call[T], outcome: Outcome, *, probe: bool, label: str, reason: str = ""
    ) -> float:
        """Count the attempt, and tell the circuit; the seconds left of the cool-down
        when the circuit is open now."""
        metrics.PROVIDER_CALLS.labels(_family(call.provider), label).inc()
        limits = call.limits
        if limits.failures_to_open is None:
            return 0.0
        return await self._circuit.record(
            call.provider,
            outcome,
            probe=probe,
            failures_to_open=limits.failures_to_open,
            open_seconds=limits.open_seconds,
            reason=reason,
        )


class _Slots:
    """The calls in flight per provider in this process. A provider's semaphore is sized
    by the call that makes it (one provider has one set of limits) and dropped once no
    call holds or awaits it, so that one per image host does not pile up."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, provider: str, size: int) -> AsyncIterator[None]:
        semaphore, users = self._held.get(provider) or (asyncio.Semaphore(size), 0)
        self._held[provider] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._held[provider]
            if users == 1:
                del self._held[provider]
            else:
                self._held[provider] = (semaphore, users - 1)


def _family(provider: str) -> str:
    """The metrics' label of a provider: `fetch` for every `fetch:HOST`."""
    return provider.split(":", 1)[0]


def _label(failure: retries.Failure) -> str:
    if failure.kind != "status":
        return failure.kind
    if failure.rate_limited:
        return "rate_limited"
    assert failure.status is not None
    return "server_error" if failure.status >= 500 else "client_error"
