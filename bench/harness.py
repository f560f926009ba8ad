"""What every workload gets: the catalog, the plan, fresh copies and running stacks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from bench.catalog import Catalog, fresh_copy
from bench.plan import Plan
from bench.stack import Stack, flush_redis


@dataclass(frozen=True)
class JobTimes:
    """A job's own timestamps (Postgres clock), as its row recorded them."""

    created_at: datetime
    started_at: datetime
    finished_at: datetime

    @property
    def pickup_s(self) -> float:
        return (self.started_at - self.created_at).total_seconds()

    @property
    def worked_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


class Harness:
    """The catalog and plan of this run, and the state of the work database."""

    def __init__(self, catalog: Catalog, plan: Plan, *, profile: bool = False) -> None:
        self.catalog = catalog
        self.plan = plan
        self.profile = profile
        self._shared = False

    async def fresh(self, *, files: bool = False) -> None:
        """A fresh copy of the seeded catalog (and its files) and an empty Redis."""
        self._shared = False
        await fresh_copy(self.catalog, files=files)
        await flush_redis(self.catalog.redis_url)

    def invalidate(self) -> None:
        """After a failed workload: the next one starts from a fresh copy."""
        self._shared = False

    async def shared(self) -> None:
        """One fresh copy shared by the workloads that change little of the catalog (W4-W9),
        made by the first of them."""
        if not self._shared:
            await self.fresh()
            self._shared = True

    @asynccontextmanager
    async def running(
        self, label: str, *, workers: int = 1, env: dict[str, str] | None = None
    ) -> AsyncIterator[Stack]:
        """An API process and `workers` worker processes for the block."""
        stack = Stack(self.catalog, label, env=env, profile=self.profile)
        try:
            yield await stack.start(workers=workers)
        finally:
            stack.stop()

    async def owner(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(self.catalog.work_url)
        return conn

    async def job_times(self, job_ids: list[str]) -> dict[str, JobTimes]:
        conn = await self.owner()
        try:
            rows = await conn.fetch(
                """SELECT id::text AS id, created_at, started_at, finished_at FROM jobs
                   WHERE id = ANY($1::uuid[])""",
                job_ids,
            )
        finally:
            await conn.close()
        times = {
            r["id"]: JobTimes(r["created_at"], r["started_at"], r["finished_at"])
            for r in rows
            if r["started_at"] is not None and r["finished_at"] is not None
        }
        return times

    async def fetchval(self, query: str, *args: Any) -> Any:
        conn = await self.owner()
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()
