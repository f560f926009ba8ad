"""The rules of outside calls that need no server: which addresses are private, when a
failure is tried again and after how long, what a provider's error says."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
import tenacity

from bulkops.outside import retries
from bulkops.outside.network import is_public
from bulkops.outside.responses import media_type, provider_message
from bulkops.outside.usage import Usage


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # shared address space
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fd00::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
    ],
)
def test_private_addresses(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    ("status", "retried", "down"),
    [
        (400, False, False),
        (401, False, False),
        (404, False, False),
        (408, True, False),
        (409, True, False),
        (429, True, False),
        (500, True, False),
        (502, True, True),
        (503, True, True),
        (504, True, True),
        (529, True, True),
    ],
)
def test_which_answers_are_tried_again(status: int, retried: bool, down: bool) -> None:
    failure = retries.status_failure(status, {}, "")
    assert (failure.retryable, failure.down) == (retried, down)


def test_the_provider_header_overrides_whether_to_try_again() -> None:
    assert retries.status_failure(400, {"x-should-retry": "true"}, "").retryable
    assert not retries.status_failure(503, {"x-should-retry": "false"}, "").retryable


def test_the_wait_a_provider_asks_for() -> None:
    assert retries.retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retries.retry_after({"retry-after": "3"}) == 3.0
    assert retries.retry_after({"retry-after": "-3"}) == 0.0
    assert retries.retry_after({"retry-after": "soon"}) is None
    assert retries.retry_after({}) is None
    now = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    date = format_datetime(datetime(2026, 12, 6, 12, 0, 30, tzinfo=UTC), usegmt=True)
    assert retries.retry_after({"retry-after": date}, now=now.timestamp()) == 30.0


def after_attempt(number: int) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.AsyncRetrying(), fn=None, args=(), kwargs={})
    state.attempt_number = number
    return state


def test_a_named_wait_wins_up_to_a_cap_and_backoff_has_full_jitter() -> None:
    def delay(failure: retries.Failure, attempt: int) -> float:
        return retries.delay_before(
            failure, after_attempt(attempt), backoff_seconds=0.5, max_backoff_seconds=8
        )

    assert delay(retries.status_failure(429, {"retry-after": "2"}, ""), 1) == 2.0
    greedy = retries.status_failure(429, {"retry-after": "3600"}, "")
    assert delay(greedy, 1) == retries.MAX_RETRY_AFTER_SECONDS
    plain = retries.status_failure(503, {}, "")
    for attempt in range(1, 12):
        assert 0.0 <= delay(plain, attempt) <= min(8.0, 0.5 * 2 ** (attempt - 1))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": {"message": "Invalid model", "type": "x"}}', "Invalid model"),
        (b'{"error": "overloaded"}', "overloaded"),
        (b'{"detail": "Not allowed"}', "Not allowed"),
        (b"<html>\n  Bad   Gateway </html>", "<html> Bad Gateway </html>"),
        (b"", ""),
    ],
)
def test_the_message_of_a_providers_error(body: bytes, message: str) -> None:
    assert provider_message(body) == message


def test_a_long_message_is_cut() -> None:
    assert len(provider_message(b"x" * 10_000)) == 300


def test_media_type() -> None:
    assert media_type("Image/JPEG; charset=binary") == "image/jpeg"
    assert media_type(None) is None
    assert media_type("") is None


def test_usage_adds_up_and_is_stored_without_what_is_waiting_now() -> None:
    total = Usage(calls=1, tokens_in=10)
    total.add(Usage(calls=2, retries=1, rate_limited=1, tokens_out=5, waited_seconds=0.5))
    assert total.tokens == 15
    stored = total.to_json()
    assert "waiting_now" not in stored
    assert Usage.from_json(stored) == total
    assert Usage.from_json(None) == Usage()
