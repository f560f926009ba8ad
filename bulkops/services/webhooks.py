"""Webhooks following the Standard Webhooks specification: a tenant's endpoints (checked
when saved), their delivery log and redelivery. The trigger on jobs writes one delivery
per event and endpoint (the outbox); `webhook_delivery` sends them."""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

from bulkops.config import Settings
from bulkops.db import webhooks as db
from bulkops.db.pool import tenant_transaction
from bulkops.db.webhooks import DeliveryRow as Delivery
from bulkops.db.webhooks import EndpointRow as Endpoint
from bulkops.errors import InputError, NotFoundError
from bulkops.outside import CallFailed, check_public_url
from bulkops.services.container import Services

__all__ = ["EVENTS", "Delivery", "Endpoint"]


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
