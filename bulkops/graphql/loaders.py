"""Per-request data loaders, so a page of products costs one query per relation."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import asyncpg
from strawberry.dataloader import DataLoader

from bulkops.db import datasets as datasets_db
from bulkops.db import jobs as jobs_db
from bulkops.db import products as products_db
from bulkops.db.pool import tenant_transaction
from bulkops.models import DatasetRow, ImageRow, JobState


class Loaders:
    def __init__(self, pool: asyncpg.Pool, tenant_id: str) -> None:
        self._pool = pool
        self._tenant = tenant_id
        self.identifiers = DataLoader(self._identifiers)
        self.images = DataLoader(self._images)
        self.datasets_of_product = DataLoader(self._datasets_of_product)
        self.jobs = DataLoader(self._jobs)

    async def _identifiers(self, ids: Sequence[int]) -> list[list[tuple[str, str]]]:
        async with tenant_transaction(self._pool, self._tenant) as conn:
            rows = await products_db.identifiers_for(conn, list(ids))
        grouped: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for product_id, kind, value in rows:
            grouped[product_id].append((kind, value))
        return [grouped[i] for i in ids]

    async def _images(self, ids: Sequence[int]) -> list[list[ImageRow]]:
        async with tenant_transaction(self._pool, self._tenant) as conn:
            rows = await products_db.images_for(conn, list(ids))
        grouped: dict[int, list[ImageRow]] = defaultdict(list)
        for row in rows:
            grouped[row.product_id].append(row)
        return [grouped[i] for i in ids]

    async def _datasets_of_product(self, ids: Sequence[int]) -> list[list[DatasetRow]]:
        async with tenant_transaction(self._pool, self._tenant) as conn:
            pairs = await products_db.dataset_ids_for(conn, list(ids))
            datasets = {
                d.id: d for d in await datasets_db.get_datasets(conn, sorted({d for _, d in pairs}))
            }
        grouped: dict[int, list[DatasetRow]] = defaultdict(list)
        for product_id, dataset_id in pairs:
            grouped[product_id].append(datasets[dataset_id])
        return [grouped[i] for i in ids]

    async def _jobs(self, ids: Sequence[str]) -> list[JobState | None]:
        async with tenant_transaction(self._pool, self._tenant) as conn:
            found = {j.id: j for j in await jobs_db.get_jobs(conn, list(ids))}
        return [found.get(i) for i in ids]
