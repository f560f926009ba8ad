"""The services object: what the services need from the process, built once by the API's
lifespan and once by each worker, and passed down explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
from arq.connections import ArqRedis

from bulkops.config import Settings
from bulkops.operations import REGISTRY, Registry
from bulkops.outside import OutsideCalls
from bulkops.storage import Storage


@dataclass(frozen=True)
class Services:
    """Pools, queue, stored files, settings, the process's outside calls, and the
    operations the process runs."""

    pool: asyncpg.Pool
    redis: ArqRedis
    storage: Storage
    settings: Settings
    outside: OutsideCalls
    operations: Registry = field(default_factory=lambda: REGISTRY)

    @property
    def idempotency_ttl(self) -> timedelta:
        """How long an idempotency key replays its first answer (BULKOPS_IDEMPOTENCY_HOURS)."""
        return timedelta(hours=self.settings.idempotency_hours)
