"""What a webhook URL must be, and when a failed delivery is tried again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bulkops.config import Settings
from bulkops.errors import InputError
from bulkops.outside import Posted
from bulkops.services.webhook_delivery import next_attempt
from bulkops.services.webhooks import checked_events, checked_url, new_secret

NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def test_production_takes_only_public_https_urls() -> None:
    production = Settings(dev=False)
    for url, code in [
        ("http://93.184.215.14/hook", "INVALID_URL"),
        ("https://127.0.0.1/hook", "PRIVATE_NETWORK"),
        ("https://10.1.2.3/hook", "PRIVATE_NETWORK"),
        ("https://169.254.169.254/latest", "PRIVATE_NETWORK"),
        ("https://[::1]/hook", "PRIVATE_NETWORK"),
    ]:
        with pytest.raises(InputError) as caught:
            await checked_url(production, url)
        assert (caught.value.code, caught.value.field) == (code, ["url"]), url
    assert await checked_url(production, " https://93.184.215.14/hook ") == (
        "https://93.184.215.14/hook"
    )


async def test_dev_mode_takes_http_and_the_setting_lets_private_addresses_in() -> None:
    dev = Settings(dev=True, allow_private_networks=True)
    assert await checked_url(dev, "http://127.0.0.1:9000/hook") == "http://127.0.0.1:9000/hook"
    with pytest.raises(InputError):
        await checked_url(Settings(dev=True), "http://127.0.0.1:9000/hook")


def test_event_names_are_checked_and_empty_means_every_event() -> None:
    assert checked_events(None) == []
    assert checked_events(["job.failed", "job.failed", "job.partial"]) == [
        "job.failed",
        "job.partial",
    ]
    with pytest.raises(InputError) as caught:
        checked_events(["job.done"])
    assert caught.value.field == ["events", "0"]


def test_secrets_carry_32_random_bytes() -> None:
    import base64

    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_secret() != secret


def test_retries_follow_the_schedule_jittered_and_stop_after_its_last_wait() -> None:
    settings = Settings()
    schedule = settings.webhook_retry_schedule
    assert 2.5 * 86400 < sum(schedule) < 3.5 * 86400
    failed = Posted(503, error="503 Service Unavailable")
    for attempts, wait in enumerate(schedule, start=1):
        at = next_attempt(settings, attempts, failed, NOW)
        assert at is not None
        assert timedelta(seconds=wait * 0.8) <= at - NOW <= timedelta(seconds=wait * 1.2)
    assert next_attempt(settings, len(schedule) + 1, failed, NOW) is None


def test_a_longer_retry_after_is_waited_out() -> None:
    asked = Posted(429, error="429 Too Many Requests", retry_after=3600)
    at = next_attempt(Settings(), 1, asked, NOW)
    assert at == NOW + timedelta(seconds=3600)
