"""Webhook endpoints and their delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from bulkops.graphql.paging import int_cursor, page_size
from bulkops.graphql.types.common import Connection, Info, connection, encode_cursor
from bulkops.graphql.types.results import Rejected
from bulkops.services import webhooks

_CURSOR = "delivery"


@strawberry.type(
    description="One event for one endpoint, and how sending it went: PENDING (still to "
    "be sent, or retried at nextAttemptAt), DELIVERED or FAILED (no attempt left, or the "
    "endpoint answered 410)."
)
class WebhookDelivery:
    id: strawberry.ID = strawberry.field(description="The delivery (for redeliverWebhook).")
    event_id: str = strawberry.field(
        description="The event's id, sent as the webhook-id header on every attempt."
    )
    event: str = strawberry.field(description="The event name, e.g. job.succeeded.")
    job_id: strawberry.ID | None = strawberry.field(description="The job the event is about.")
    attempts: int = strawberry.field(description="Attempts made so far.")
    status: str = strawberry.field(description="PENDING, DELIVERED or FAILED.")
    last_response_status: int | None = strawberry.field(
        description="The HTTP status of the last answer (null: none came)."
    )
    last_error: str | None = strawberry.field(
        description="Why the last attempt failed (the answer's status and message, a "
        "timeout, a refused connection)."
    )
    next_attempt_at: datetime | None = strawberry.field(
        description="When the next attempt is due (null once it ended)."
    )
    delivered_at: datetime | None = strawberry.field(description="When the receiver answered 2xx.")
    created_at: datetime = strawberry.field(description="When the event happened.")

    @classmethod
    def of(cls, row: webhooks.Delivery) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(row.id),
            event_id=row.event_id,
            event=row.event,
            job_id=strawberry.ID(row.job_id) if row.job_id is not None else None,
            attempts=row.attempts,
            status=row.status,
            last_response_status=row.last_response_status,
            last_error=row.last_error,
            next_attempt_at=row.next_attempt_at,
            delivered_at=row.delivered_at,
            created_at=row.created_at,
        )


@strawberry.type(
    description="A URL that receives the tenant's events, signed as the Standard Webhooks "
    "specification says."
)
class WebhookEndpoint:
    id: strawberry.ID = strawberry.field(description="The endpoint.")
    url: str = strawberry.field(description="Where deliveries are POSTed.")
    events: list[str] = strawberry.field(description="The events delivered; empty: every event.")
    description: str | None = strawberry.field(description="What the endpoint is for.")
    enabled: bool = strawberry.field(
        description="Whether events are delivered to it; a disabled endpoint gets none."
    )
    disabled_reason: str | None = strawberry.field(
        description="Why it was disabled (by a 410 answer, failures for days, or by hand)."
    )
    created_at: datetime = strawberry.field(description="When it was created.")

    @classmethod
    def of(cls, row: webhooks.Endpoint) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(row.id),
            url=row.url,
            events=row.events,
            description=row.description,
            enabled=row.enabled,
            disabled_reason=row.disabled_reason,
            created_at=row.created_at,
        )

    @strawberry.field(description="The delivery log, newest first, a page at a time.")
    async def deliveries(
        self,
        info: Info,
        first: Annotated[
            int | None, strawberry.argument(description="At most this many (default 50).")
        ] = 50,
        after: Annotated[
            str | None, strawberry.argument(description="The endCursor of the page before.")
        ] = None,
    ) -> Connection[WebhookDelivery]:
        size = page_size(first)
        before = int_cursor(after, _CURSOR) or None
        rows, total = await webhooks.list_deliveries(
            info.context.services,
            info.context.tenant,
            str(self.id),
            before_seq=before,
            limit=size + 1,
        )
        return connection(
            rows[:size],
            cursor=lambda r: encode_cursor(_CURSOR, r.seq),
            node=WebhookDelivery.of,
            has_next=len(rows) > size,
            has_previous=after is not None,
            total=total,
        )


@strawberry.type(description="A new endpoint, or a new secret, with the secret shown once.")
class CreatedWebhookEndpoint:
    endpoint: WebhookEndpoint = strawberry.field(description="The endpoint.")
    secret: str = strawberry.field(
        description="whsec_…: verify deliveries with it (shown this once; rotate to get a new one)."
    )


CreateWebhookEndpointResult = Annotated[
    CreatedWebhookEndpoint | Rejected, strawberry.union("CreateWebhookEndpointResult")
]
UpdateWebhookEndpointResult = Annotated[
    WebhookEndpoint | Rejected, strawberry.union("UpdateWebhookEndpointResult")
]
RedeliverWebhookResult = Annotated[
    WebhookDelivery | Rejected, strawberry.union("RedeliverWebhookResult")
]
