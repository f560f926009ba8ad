"""`GET /metrics`: this API process's Prometheus metrics, and the queue's depth.

Unauthenticated, as Prometheus scrapes it: the metrics name no tenant, job or item, but
they tell how busy the service is, so a public deployment keeps the path off its edge."""

from __future__ import annotations

import logging

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bulkops.metrics import QUEUE_DEPTH
from bulkops.services.queue_status import waiting_slices
from bulkops.web.state import AppState

log = logging.getLogger(__name__)


async def metrics(request: Request) -> Response:
    state: AppState = request.scope["state"]
    # Read at scrape time, here rather than in a collector: collectors run synchronously
    # and the Redis client is async, and a value read now is never stale.
    try:
        waiting = await waiting_slices(state["services"].redis)
    except (RedisError, OSError):
        log.warning("could not read the queue's depth from Redis", exc_info=True)
        # No value rather than an old one: the series goes missing while Redis is away.
        QUEUE_DEPTH.clear()
    else:
        for priority, count in waiting.items():
            QUEUE_DEPTH.labels(priority.value).set(count)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def routes() -> list[Route]:
    return [Route("/metrics", metrics, methods=["GET"])]
