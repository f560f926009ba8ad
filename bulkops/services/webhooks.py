"""Webhooks following the Standard Webhooks specification: a tenant's endpoints (checked
when saved), and the delivery of the outbox the trigger on jobs fills.

A delivery is one event for one endpoint, sent with the headers `webhook-id` (the event's
id, the same on every attempt), `webhook-timestamp` and `webhook-signature` (`v1,` and the
HMAC-SHA256 of `id.timestamp.body`, signed by the `standardwebhooks` package; during the
overlap after a rotation, one signature per secret, space-separated). A 2xx delivers it; a
410 disables the endpoint; anything else is tried again after the next wait of
`Settings.webhook_retry_schedule`, jittered, or the receiver's Retry-After when longer.
No attempt is made inside a database transaction."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from standardwebhooks import Webhook

from bulkops.config import Settings
from bulkops.db import webhooks as db
from bulkops.db.pool import tenant_transaction
from bulkops.db.webhooks import ClaimedDelivery
from bulkops.db.webhooks import DeliveryRow as Delivery
from bulkops.db.webhooks import EndpointRow as Endpoint
from bulkops.errors import InputError, NotFoundError
from bulkops.outside import CallFailed, Posted, check_public_url
from bulkops.services import export_files
from bulkops.services.container import Services
from bulkops.services.signing import signing_key

__all__ = ["EVENTS", "Delivery", "Endpoint"]

log = logging.getLogger(__name__)

EVENTS = (
    "job.queued",
    "job.started",
    "job.paused",
    "job.succeeded",
    "job.partial",
    "job.failed",
    "job.cancelled",
    "schedule.skipped",
)
MAX_URL_CHARS = 2000
MAX_DESCRIPTION_CHARS = 500
MAX_ENDPOINTS = 50
# How long saving an endpoint waits for its host name to resolve.
URL_CHECK_SECONDS = 5.0
# A sending worker holds a delivery for twice the attempt's own timeout (and a second);
# a delivery whose worker died is tried again once the hold lapses.
LEASE_FACTOR = 2.0
# A Retry-After longer than this is not waited out in full.
MAX_RETRY_AFTER = timedelta(days=1)


def new_secret() -> str:
    """`whsec_` and the base64 of 32 random bytes (the form the specification's
    libraries take)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def checked_url(settings: Settings, url: str) -> str:
    """The URL, trimmed, once it may receive deliveries: https (http too in dev mode),
    and not on a private network unless `allow_private_networks`. Raises InputError
    naming `url`."""
    url = url.strip()
    if not url or len(url) > MAX_URL_CHARS:
        raise InputError(
            f"Give a URL of at most {MAX_URL_CHARS} characters.", code="INVALID_URL", field=["url"]
        )
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise InputError(f"Not a URL: {exc}.", code="INVALID_URL", field=["url"]) from exc
    allowed = ("https", "http") if settings.dev else ("https",)
    if scheme not in allowed:
        raise InputError(
            "A webhook URL must use https" + (" (or http in dev mode)." if settings.dev else "."),
            code="INVALID_URL",
            field=["url"],
        )
    try:
        async with asyncio.timeout(URL_CHECK_SECONDS):
            await check_public_url(url, allow_private=settings.allow_private_networks)
    except CallFailed as exc:
        raise InputError(exc.message, code=exc.code, field=["url"]) from exc
    except TimeoutError as exc:
        raise InputError(
            "The URL's host could not be resolved in time.", code="UNREACHABLE", field=["url"]
        ) from exc
    return url


def checked_events(events: list[str] | None) -> list[str]:
    """The event names, each known and given once; empty (every event) for None."""
    if events is None:
        return []
    for index, name in enumerate(events):
        if name not in EVENTS:
            raise InputError(
                f"Unknown event {name!r}; the events are {', '.join(EVENTS)}.",
                code="UNKNOWN_EVENT",
                field=["events", str(index)],
            )
    return list(dict.fromkeys(events))


def _checked_id(value: str, field: str = "id") -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise (_not_found() if field == "id" else _no_delivery()) from None


def _not_found() -> NotFoundError:
    return NotFoundError("No such webhook endpoint.", field=["id"])


def _no_delivery() -> NotFoundError:
    return NotFoundError("No such delivery.", field=["deliveryId"])


async def create_endpoint(
    services: Services,
    tenant_id: str,
    *,
    url: str,
    events: list[str] | None,
    description: str | None,
) -> tuple[Endpoint, str]:
    """A new enabled endpoint and its secret (shown to the caller once)."""
    if description is not None and len(description) > MAX_DESCRIPTION_CHARS:
        raise InputError(
            f"A description has at most {MAX_DESCRIPTION_CHARS} characters.",
            code="INVALID_DESCRIPTION",
            field=["description"],
        )
    names = checked_events(events)
    url = await checked_url(services.settings, url)
    secret = new_secret()
    async with tenant_transaction(services.pool, tenant_id) as conn:
        if len(await db.list_endpoints(conn)) >= MAX_ENDPOINTS:
            raise InputError(
                f"A tenant has at most {MAX_ENDPOINTS} webhook endpoints.",
                code="TOO_MANY_ENDPOINTS",
            )
        endpoint = await db.insert_endpoint(
            conn, url=url, events=names, description=description, secret=secret
        )
    return endpoint, secret


async def update_endpoint(
    services: Services,
    tenant_id: str,
    endpoint_id: str,
    *,
    url: str | None,
    events: list[str] | None,
    enabled: bool | None,
) -> Endpoint:
    """Change what is given; enabling a disabled endpoint clears its reason."""
    endpoint_id = _checked_id(endpoint_id)
    names = checked_events(events) if events is not None else None
    if url is not None:
        url = await checked_url(services.settings, url)
    async with tenant_transaction(services.pool, tenant_id) as conn:
        endpoint = await db.update_endpoint(
            conn, endpoint_id, url=url, events=names, enabled=enabled
        )
    if endpoint is None:
        raise _not_found()
    return endpoint


async def rotate_secret(
    services: Services, tenant_id: str, endpoint_id: str
) -> tuple[Endpoint, str]:
    """A new secret; the previous one signs too for `webhook_secret_overlap_hours`."""
    endpoint_id = _checked_id(endpoint_id)
    secret = new_secret()
    overlap = timedelta(hours=services.settings.webhook_secret_overlap_hours)
    async with tenant_transaction(services.pool, tenant_id) as conn:
        endpoint = await db.rotate_secret(conn, endpoint_id, secret, overlap=overlap)
    if endpoint is None:
        raise _not_found()
    return endpoint, secret


async def delete_endpoint(services: Services, tenant_id: str, endpoint_id: str) -> str:
    """Remove the endpoint and its delivery log; its id."""
    endpoint_id = _checked_id(endpoint_id)
    async with tenant_transaction(services.pool, tenant_id) as conn:
        if not await db.delete_endpoint(conn, endpoint_id):
            raise _not_found()
    return endpoint_id


async def list_endpoints(services: Services, tenant_id: str) -> list[Endpoint]:
    async with tenant_transaction(services.pool, tenant_id) as conn:
        return await db.list_endpoints(conn)


async def list_deliveries(
    services: Services, tenant_id: str, endpoint_id: str, *, before_seq: int | None, limit: int
) -> tuple[list[Delivery], int]:
    """A page of the endpoint's deliveries, newest first, and how many it has in all."""
    async with tenant_transaction(services.pool, tenant_id) as conn:
        rows = await db.list_deliveries(conn, endpoint_id, before_seq=before_seq, limit=limit)
        total = await db.count_deliveries(conn, endpoint_id)
    return rows, total


async def redeliver(services: Services, tenant_id: str, delivery_id: str) -> Delivery:
    """Send the delivery's event again now, under the same webhook-id."""
    delivery_id = _checked_id(delivery_id, "deliveryId")
    async with tenant_transaction(services.pool, tenant_id) as conn:
        delivery = await db.redeliver(conn, delivery_id)
        if delivery is None and await db.get_delivery(conn, delivery_id) is not None:
            raise InputError(
                "The delivery's endpoint is disabled; enable it first.",
                code="ENDPOINT_DISABLED",
                field=["deliveryId"],
            )
    if delivery is None:
        raise _no_delivery()
    return delivery


def body_of(payload: dict[str, Any]) -> bytes:
    """A delivery's body: the same bytes for the same payload."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


async def with_links(services: Services, claimed: ClaimedDelivery) -> dict[str, Any]:
    """The payload with the job's links, made when it is sent (the trigger that wrote it
    knows no URLs): `errorsUrl` (the failed items as CSV, for a bearer token with the
    read scope) when items failed, and an export's `resultFile` (a signed link) once it
    has ended with its file, while the file is kept."""
    data = claimed.payload.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("job"), dict):
        return claimed.payload
    job: dict[str, Any] = data["job"]
    base = services.settings.public_url.rstrip("/")
    result_file: dict[str, Any] | None = None
    if job.get("operation") == "exportProducts" and job.get("status") in ("SUCCEEDED", "PARTIAL"):
        async with tenant_transaction(services.pool, claimed.tenant_id) as conn:
            file = await db.export_file_of_job(conn, str(job["id"]))
        if file is not None and file.expires_at > datetime.now(UTC):
            link = export_files.link(signing_key(services.settings), base, file)
            result_file = {
                "url": link.url,
                "expiresAt": link.expires_at.isoformat().replace("+00:00", "Z"),
                "rows": file.rows,
                "format": file.format.upper(),
            }
    errors_url = f"{base}/jobs/{job['id']}/errors.csv" if job.get("failed") else None
    linked = {**job, "resultFile": result_file, "errorsUrl": errors_url}
    return {**claimed.payload, "data": {**data, "job": linked}}


def signed_headers(claimed: ClaimedDelivery, body: bytes, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed with every current secret."""
    signatures = " ".join(Webhook(s).sign(claimed.event_id, now, body) for s in claimed.secrets)
    return {
        "webhook-id": claimed.event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
    }


def next_attempt(
    settings: Settings, attempts: int, posted: Posted, now: datetime
) -> datetime | None:
    """When to try again after `attempts` failed attempts, or None when that was the last."""
    schedule = settings.webhook_retry_schedule
    if attempts > len(schedule):
        return None
    wait = timedelta(seconds=schedule[attempts - 1] * random.uniform(0.8, 1.2))
    if posted.retry_after is not None:
        wait = max(wait, min(timedelta(seconds=posted.retry_after), MAX_RETRY_AFTER))
    return now + wait


async def deliver_due(services: Services) -> int:
    """Claim the due deliveries (at most `webhook_concurrency`), send them at once and
    record each outcome as it comes. Returns how many were sent.

    The database work of the sends takes turns (`one_at_a_time`), so that the sender holds
    at most one connection of the worker's pool, which its job slices need."""
    settings = services.settings
    lease = timedelta(seconds=settings.webhook_timeout_seconds * LEASE_FACTOR + 1)
    async with services.pool.acquire() as conn:
        claimed = await db.claim_due(conn, limit=settings.webhook_concurrency, lease=lease)
    if claimed:
        one_at_a_time = asyncio.Lock()
        await asyncio.gather(*(_deliver(services, c, one_at_a_time) for c in claimed))
    return len(claimed)


async def _deliver(services: Services, claimed: ClaimedDelivery, db_turn: asyncio.Lock) -> None:
    settings = services.settings
    async with db_turn:
        body = body_of(await with_links(services, claimed))
    now = datetime.now(UTC)
    posted = await services.outside.post_once(
        claimed.url,
        content=body,
        headers=signed_headers(claimed, body, now),
        timeout_seconds=settings.webhook_timeout_seconds,
    )
    async with db_turn:
        await _record(services, claimed, posted, now)


async def _record(
    services: Services, claimed: ClaimedDelivery, posted: Posted, now: datetime
) -> None:
    settings = services.settings
    extra = {"tenant_id": claimed.tenant_id, "delivery_id": claimed.id}
    async with tenant_transaction(services.pool, claimed.tenant_id) as conn:
        if posted.ok:
            assert posted.status is not None
            await db.record_delivered(conn, claimed, status_code=posted.status)
            log.info("delivered %s %s", claimed.event, claimed.event_id, extra=extra)
            return
        error = posted.error or "no answer"
        if posted.status == 410:
            await db.record_failure(
                conn, claimed, status_code=410, error=error, next_attempt_at=None
            )
            await db.disable_endpoint(
                conn,
                claimed.endpoint_id,
                f"The endpoint answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC.",
            )
            log.warning(
                "webhook endpoint %s answered 410: disabled", claimed.endpoint_id, extra=extra
            )
            return
        retry_at = next_attempt(settings, claimed.attempts, posted, now)
        held = await db.record_failure(
            conn, claimed, status_code=posted.status, error=error, next_attempt_at=retry_at
        )
        if held and await db.mark_failing(
            conn,
            claimed.endpoint_id,
            disable_after=timedelta(hours=settings.webhook_disable_after_hours),
        ):
            log.warning(
                "webhook endpoint %s failing for days: disabled", claimed.endpoint_id, extra=extra
            )
    log.info(
        "delivery of %s %s failed (attempt %d): %s; %s",
        claimed.event,
        claimed.event_id,
        claimed.attempts,
        error,
        f"next at {retry_at:%H:%M:%S}" if retry_at else "no more attempts",
        extra=extra,
    )


async def remove_expired(services: Services) -> int:
    """Remove ended deliveries past `webhook_delivery_retention_days`."""
    retention = timedelta(days=services.settings.webhook_delivery_retention_days)
    async with services.pool.acquire() as conn:
        return await db.remove_expired(conn, retention)
