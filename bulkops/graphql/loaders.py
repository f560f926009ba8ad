"""Per-request data loaders, so a page of products costs one query per relation."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from strawberry.dataloader import DataLoader

from bulkops.models import DatasetRow, ImageRow, JobState
from bulkops.services import catalog, job_reads


class Loaders:
    def __init__(self, pool: asyncpg.Pool, tenant_id: str) -> None:
        self._pool = pool
        self._tenant = tenant_id
        self.identifiers = DataLoader(self._identifiers)
        self.images = DataLoader(self._images)
        self.datasets_of_product = DataLoader(self._datasets_of_product)
        self.jobs = DataLoader(self._jobs)

    async def _identifiers(self, ids: Sequence[int]) -> list[list[tuple[str, str]]]:
        found = await catalog.identifiers_of(self._pool, self._tenant, list(ids))
        return [found.get(i, []) for i in ids]

    async def _images(self, ids: Sequence[int]) -> list[list[ImageRow]]:
        found = await catalog.images_of(self._pool, self._tenant, list(ids))
        return [found.get(i, []) for i in ids]

    async def _datasets_of_product(self, ids: Sequence[int]) -> list[list[DatasetRow]]:
        found = await catalog.datasets_of(self._pool, self._tenant, list(ids))
        return [found.get(i, []) for i in ids]

    async def _jobs(self, ids: Sequence[str]) -> list[JobState | None]:
        found = {j.id: j for j in await job_reads.get_jobs(self._pool, self._tenant, list(ids))}
        return [found.get(i) for i in ids]
