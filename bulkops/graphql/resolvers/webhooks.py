"""Webhook endpoints: thin resolvers over bulkops.services.webhooks."""

from __future__ import annotations

import strawberry

from bulkops.errors import InputError
from bulkops.graphql.resolvers.bulk import rejected
from bulkops.graphql.types.common import Info
from bulkops.graphql.types.results import Deleted, DeleteResult
from bulkops.graphql.types.webhooks import (
    CreatedWebhookEndpoint,
    CreateWebhookEndpointResult,
    RedeliverWebhookResult,
    UpdateWebhookEndpointResult,
    WebhookDelivery,
    WebhookEndpoint,
)
from bulkops.services import webhooks


async def webhook_endpoints(info: Info) -> list[WebhookEndpoint]:
    rows = await webhooks.list_endpoints(info.context.services, info.context.tenant)
    return [WebhookEndpoint.of(r) for r in rows]


async def create_endpoint(
    info: Info, url: str, events: list[str] | None, description: str | None
) -> CreateWebhookEndpointResult:
    try:
        endpoint, secret = await webhooks.create_endpoint(
            info.context.services,
            info.context.tenant,
            url=url,
            events=events,
            description=description,
        )
    except InputError as exc:
        return rejected(exc)
    return CreatedWebhookEndpoint(endpoint=WebhookEndpoint.of(endpoint), secret=secret)


async def update_endpoint(
    info: Info, id: str, url: str | None, events: list[str] | None, enabled: bool | None
) -> UpdateWebhookEndpointResult:
    try:
        endpoint = await webhooks.update_endpoint(
            info.context.services, info.context.tenant, id, url=url, events=events, enabled=enabled
        )
    except InputError as exc:
        return rejected(exc)
    return WebhookEndpoint.of(endpoint)


async def rotate_secret(info: Info, id: str) -> CreateWebhookEndpointResult:
    try:
        endpoint, secret = await webhooks.rotate_secret(
            info.context.services, info.context.tenant, id
        )
    except InputError as exc:
        return rejected(exc)
    return CreatedWebhookEndpoint(endpoint=WebhookEndpoint.of(endpoint), secret=secret)


async def delete_endpoint(info: Info, id: str) -> DeleteResult:
    try:
        gone = await webhooks.delete_endpoint(info.context.services, info.context.tenant, id)
    except InputError as exc:
        return rejected(exc)
    return Deleted(id=strawberry.ID(gone))


async def redeliver(info: Info, delivery_id: str) -> RedeliverWebhookResult:
    try:
        delivery = await webhooks.redeliver(info.context.services, info.context.tenant, delivery_id)
    except InputError as exc:
        return rejected(exc)
    return WebhookDelivery.of(delivery)
