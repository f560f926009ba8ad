"""Webhook endpoints and their deliveries (the outbox the trigger on jobs fills). Every
query runs in a tenant's transaction, except `claim_due`, which spans tenants through a
SECURITY DEFINER function of the migrations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from bulkops.models import ExportFileRow


@dataclass(frozen=True)
class EndpointRow:
    id: str
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> EndpointRow:
        return cls(
            id=str(row["id"]),
            url=row["url"],
            events=list(row["events"]),
            description=row["description"],
            enabled=row["enabled"],
            disabled_reason=row["disabled_reason"],
            created_at=row["created_at"],
        )


@dataclass(frozen=True)
class DeliveryRow:
    id: str
    seq: int
    endpoint_id: str
    event_id: str
    event: str
    job_id: str | None
    status: str
    attempts: int
    last_response_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> DeliveryRow:
        return cls(
            id=str(row["id"]),
            seq=row["seq"],
            endpoint_id=str(row["endpoint_id"]),
            event_id=row["event_id"],
            event=row["event"],
            job_id=str(row["job_id"]) if row["job_id"] is not None else None,
            status=row["status"],
            attempts=row["attempts"],
            last_response_status=row["last_response_status"],
            last_error=row["last_error"],
            next_attempt_at=row["next_attempt_at"],
            delivered_at=row["delivered_at"],
            created_at=row["created_at"],
        )


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery a worker now holds, with what sending it needs."""

    id: str
    tenant_id: str
    endpoint_id: str
    event_id: str
    event: str
    payload: dict[str, Any]
    # Attempts including this one.
    attempts: int
    url: str
    secrets: list[str]

    @classmethod
    def from_row(cls, row: Any) -> ClaimedDelivery:
        return cls(
            id=str(row["id"]),
            tenant_id=str(row["tenant_id"]),
            endpoint_id=str(row["endpoint_id"]),
            event_id=row["event_id"],
            event=row["event"],
            payload=row["payload"],
            attempts=row["attempts"],
            url=row["url"],
            secrets=list(row["secrets"]),
        )


_ENDPOINT = "id, url, events, description, enabled, disabled_reason, created_at"
_DELIVERY = (
    "id, seq, endpoint_id, event_id, event, job_id, status, attempts, last_response_status,"
    " last_error, next_attempt_at, delivered_at, created_at"
)


async def insert_endpoint(
    conn: asyncpg.Connection,
    *,
    url: str,
    events: list[str],
    description: str | None,
    secret: str,
) -> EndpointRow:
    row = await conn.fetchrow(
        f"""INSERT INTO webhook_endpoints (url, events, description, secret)
            VALUES ($1, $2, $3, $4) RETURNING {_ENDPOINT}""",
        url,
        events,
        description,
        secret,
    )
    return EndpointRow.from_row(row)


async def list_endpoints(conn: asyncpg.Connection) -> list[EndpointRow]:
    rows = await conn.fetch(
        f"""SELECT {_ENDPOINT} FROM webhook_endpoints WHERE tenant_id = current_tenant_id()
            ORDER BY created_at, id"""
    )
    return [EndpointRow.from_row(r) for r in rows]


async def get_endpoint(conn: asyncpg.Connection, endpoint_id: str) -> EndpointRow | None:
    row = await conn.fetchrow(
        f"""SELECT {_ENDPOINT} FROM webhook_endpoints
            WHERE id = $1 AND tenant_id = current_tenant_id()""",
        endpoint_id,
    )
    return EndpointRow.from_row(row) if row is not None else None


async def update_endpoint(
    conn: asyncpg.Connection,
    endpoint_id: str,
    *,
    url: str | None,
    events: list[str] | None,
    enabled: bool | None,
) -> EndpointRow | None:
    """Change what is given (None keeps it). Enabling clears the reason it was disabled
    and its failing streak."""
    row = await conn.fetchrow(
        f"""UPDATE webhook_endpoints SET
              url = COALESCE($2, url),
              events = COALESCE($3, events),
              enabled = COALESCE($4, enabled),
              disabled_reason = CASE WHEN $4 IS TRUE THEN NULL
                                     WHEN $4 IS FALSE AND enabled
                                       THEN 'Disabled by updateWebhookEndpoint.'
                                     ELSE disabled_reason END,
              failing_since = CASE WHEN $4 IS TRUE THEN NULL ELSE failing_since END,
              updated_at = now()
            WHERE id = $1 AND tenant_id = current_tenant_id()
            RETURNING {_ENDPOINT}""",
        endpoint_id,
        url,
        events,
        enabled,
    )
    return EndpointRow.from_row(row) if row is not None else None


async def rotate_secret(
    conn: asyncpg.Connection, endpoint_id: str, secret: str, *, overlap: timedelta
) -> EndpointRow | None:
    """A new secret; the current one keeps signing for `overlap`."""
    row = await conn.fetchrow(
        f"""UPDATE webhook_endpoints SET
              previous_secret = secret,
              previous_secret_expires_at = now() + $3::interval,
              secret = $2,
              updated_at = now()
            WHERE id = $1 AND tenant_id = current_tenant_id()
            RETURNING {_ENDPOINT}""",
        endpoint_id,
        secret,
        overlap,
    )
    return EndpointRow.from_row(row) if row is not None else None


async def delete_endpoint(conn: asyncpg.Connection, endpoint_id: str) -> bool:
    """Remove the endpoint with its deliveries; whether it existed."""
    status: str = await conn.execute(
        "DELETE FROM webhook_endpoints WHERE id = $1 AND tenant_id = current_tenant_id()",
        endpoint_id,
    )
    return status.endswith(" 1")


async def list_deliveries(
    conn: asyncpg.Connection, endpoint_id: str, *, before_seq: int | None, limit: int
) -> list[DeliveryRow]:
    """The endpoint's deliveries, newest first, older than `before_seq` when given."""
    rows = await conn.fetch(
        f"""SELECT {_DELIVERY} FROM webhook_deliveries
            WHERE endpoint_id = $1 AND tenant_id = current_tenant_id()
              AND ($2::bigint IS NULL OR seq < $2)
            ORDER BY seq DESC LIMIT $3""",
        endpoint_id,
        before_seq,
        limit,
    )
    return [DeliveryRow.from_row(r) for r in rows]


async def count_deliveries(conn: asyncpg.Connection, endpoint_id: str) -> int:
    count: int = await conn.fetchval(
        """SELECT count(*) FROM webhook_deliveries
           WHERE endpoint_id = $1 AND tenant_id = current_tenant_id()""",
        endpoint_id,
    )
    return count


async def redeliver(conn: asyncpg.Connection, delivery_id: str) -> DeliveryRow | None:
    """Make the delivery due now (again), under its event id; None when it is not the
    tenant's or its endpoint is disabled."""
    row = await conn.fetchrow(
        f"""UPDATE webhook_deliveries d SET status = 'PENDING', next_attempt_at = now()
            FROM webhook_endpoints e
            WHERE d.id = $1 AND d.tenant_id = current_tenant_id()
              AND e.id = d.endpoint_id AND e.enabled
            RETURNING {", ".join("d." + c.strip() for c in _DELIVERY.split(","))}""",
        delivery_id,
    )
    return DeliveryRow.from_row(row) if row is not None else None


async def get_delivery(conn: asyncpg.Connection, delivery_id: str) -> DeliveryRow | None:
    row = await conn.fetchrow(
        f"""SELECT {_DELIVERY} FROM webhook_deliveries
            WHERE id = $1 AND tenant_id = current_tenant_id()""",
        delivery_id,
    )
    return DeliveryRow.from_row(row) if row is not None else None


async def enqueue_event(
    conn: asyncpg.Connection, event: str, data: dict[str, Any], *, job_id: str | None = None
) -> int:
    """Write the event `event` (its body's `data`) to the outbox of every endpoint of the
    current tenant that takes it, in the caller's transaction: it is delivered if and only
    if that transaction commits. Job events are written by a trigger on jobs; this is for
    the others (`schedule.skipped`). Returns how many deliveries were made."""
    made: int = await conn.fetchval(
        "SELECT enqueue_webhook(current_tenant_id(), $1, $2, $3)", event, job_id, data
    )
    return made


async def export_file_of_job(conn: asyncpg.Connection, job_id: str) -> ExportFileRow | None:
    """The file an exportProducts job wrote, while it is kept."""
    row = await conn.fetchrow(
        """SELECT f.* FROM jobs j
           JOIN export_files f ON f.id::text = j.params->>'file_id' AND f.tenant_id = j.tenant_id
           WHERE j.id = $1 AND j.tenant_id = current_tenant_id()
             AND j.operation = 'exportProducts'""",
        job_id,
    )
    return ExportFileRow.from_row(row) if row is not None else None


async def claim_due(
    conn: asyncpg.Connection, *, limit: int, lease: timedelta
) -> list[ClaimedDelivery]:
    """Up to `limit` due deliveries of every tenant, each leased for `lease`."""
    rows = await conn.fetch("SELECT * FROM claim_webhook_deliveries($1, $2)", limit, lease)
    return [ClaimedDelivery.from_row(r) for r in rows]


async def record_delivered(
    conn: asyncpg.Connection, claimed: ClaimedDelivery, *, status_code: int
) -> None:
    """The attempt was answered 2xx. Only the attempt that holds the delivery records
    (a redelivery or another worker may have taken it since)."""
    done = await conn.fetchval(
        """UPDATE webhook_deliveries SET status = 'DELIVERED', delivered_at = now(),
             last_response_status = $3, last_error = NULL, next_attempt_at = NULL
           WHERE id = $1 AND attempts = $2 AND status = 'PENDING'
           RETURNING endpoint_id""",
        claimed.id,
        claimed.attempts,
        status_code,
    )
    if done is not None:
        await conn.execute(
            """UPDATE webhook_endpoints SET last_success_at = now(), failing_since = NULL
               WHERE id = $1""",
            done,
        )


async def record_failure(
    conn: asyncpg.Connection,
    claimed: ClaimedDelivery,
    *,
    status_code: int | None,
    error: str,
    next_attempt_at: datetime | None,
) -> bool:
    """The attempt failed: tried again at `next_attempt_at`, or failed for good when it
    is None. Whether this attempt still held the delivery."""
    done = await conn.fetchval(
        """UPDATE webhook_deliveries SET
             status = CASE WHEN $5::timestamptz IS NULL THEN 'FAILED' ELSE 'PENDING' END,
             last_response_status = $3, last_error = $4, next_attempt_at = $5
           WHERE id = $1 AND attempts = $2 AND status = 'PENDING'
           RETURNING id""",
        claimed.id,
        claimed.attempts,
        status_code,
        error,
        next_attempt_at,
    )
    return done is not None


async def mark_failing(
    conn: asyncpg.Connection, endpoint_id: str, *, disable_after: timedelta
) -> bool:
    """Note a failed attempt on the endpoint; disable it when it has been failing, with no
    success, for longer than `disable_after`. Whether it was disabled now."""
    disabled = await conn.fetchval(
        """UPDATE webhook_endpoints SET
             failing_since = COALESCE(failing_since, now()),
             enabled = CASE WHEN failing_since < now() - $2::interval THEN false
                            ELSE enabled END,
             disabled_reason = CASE WHEN enabled AND failing_since < now() - $2::interval
               THEN 'Every delivery has failed since '
                    || to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')
                    || '.'
               ELSE disabled_reason END
           WHERE id = $1
           RETURNING enabled IS FALSE AND failing_since < now() - $2::interval""",
        endpoint_id,
        disable_after,
    )
    return bool(disabled)


async def disable_endpoint(conn: asyncpg.Connection, endpoint_id: str, reason: str) -> None:
    await conn.execute(
        """UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = now()
           WHERE id = $1 AND enabled""",
        endpoint_id,
        reason,
    )


async def remove_expired(conn: asyncpg.Connection, retention: timedelta) -> int:
    """Remove ended deliveries older than `retention` (every tenant's)."""
    removed: int = await conn.fetchval("SELECT remove_expired_webhook_deliveries($1)", retention)
    return removed


# The channel the outbox notifies when deliveries are written (migration 0021).
NUDGE_CHANNEL = "bulkops_webhooks"


async def listen_for_deliveries(
    dsn: str, role: str | None, on_nudge: Callable[[], None]
) -> asyncpg.Connection:
    """A connection of its own that calls `on_nudge` whenever a committed transaction has
    written deliveries; close it to stop."""
    server_settings = {"application_name": "bulkops-webhooks"}
    if role is not None:
        server_settings["role"] = role
    conn: asyncpg.Connection = await asyncpg.connect(dsn, server_settings=server_settings)
    await conn.add_listener(NUDGE_CHANNEL, lambda *_: on_nudge())
    return conn
