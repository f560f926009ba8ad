"""Sending the webhook outbox: a worker claims the due deliveries of every tenant, sends
each (one POST, signed with the `standardwebhooks` package: `webhook-id` is the event's
id on every attempt, and during the overlap after a rotation there is one signature per
secret, space-separated) and records how it went. A 2xx delivers it; a 410 disables the
endpoint; anything else is tried again after the next wait of
`Settings.webhook_retry_schedule`, jittered, or the receiver's Retry-After when longer.
No attempt is made inside a database transaction."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from standardwebhooks import Webhook

from bulkops.config import Settings
from bulkops.db import webhooks as db
from bulkops.db.pool import tenant_transaction
from bulkops.db.webhooks import ClaimedDelivery
from bulkops.outside import Posted
from bulkops.services import export_files
from bulkops.services.container import Services
from bulkops.services.signing import signing_key

log = logging.getLogger(__name__)

# A sending worker holds a delivery for twice the attempt's own timeout (and a second);
# a delivery whose worker died is tried again once the hold lapses.
LEASE_FACTOR = 2.0
# A Retry-After longer than this is not waited out in full.
MAX_RETRY_AFTER = timedelta(days=1)


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


async def claim(services: Services, limit: int) -> list[ClaimedDelivery]:
    """Up to `limit` due deliveries of every tenant, now held by this worker for twice the
    attempt's timeout and a second (its lease)."""
    lease = timedelta(seconds=services.settings.webhook_timeout_seconds * LEASE_FACTOR + 1)
    async with services.pool.acquire() as conn:
        return await db.claim_due(conn, limit=limit, lease=lease)


async def deliver(services: Services, claimed: ClaimedDelivery, db_turn: asyncio.Lock) -> None:
    """Send one claimed delivery and record how it went. The database work takes turns on
    `db_turn` with the sender's other deliveries, so that the sender holds at most one
    connection of the worker's pool, which its job slices need; the POST does not."""
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
