"""The queue's status, for operators (operator scope, enforced in `bulkops.graphql.scopes`)."""

from __future__ import annotations

from bulkops.graphql.types.common import Info
from bulkops.graphql.types.queue import QueueStatus
from bulkops.services.queue_status import read_queue_status


async def queue_status(info: Info) -> QueueStatus:
    return QueueStatus.from_status(await read_queue_status(info.context.services.redis))
