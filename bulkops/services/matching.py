"""matchProducts' input as the submission stages it, and reading its results."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from bulkops.db import jobs as jobs_db
from bulkops.db import match_inputs
from bulkops.db import matching as matching_db
from bulkops.db import products as products_db
from bulkops.db.pool import tenant_transaction
from bulkops.errors import InputError
from bulkops.models import ProductRow, ResultRow
from bulkops.selection import Selection, StagedRows
from bulkops.services.container import Services
from bulkops.services.match_input import MatchInput

OPERATION = "matchProducts"
MAX_ROW_NUMBER = 2**31 - 1


@dataclass(frozen=True)
class MatchResults:
    """Stored outcomes and the products they name (matched and candidates), by id."""

    rows: list[ResultRow]
    products: dict[int, ProductRow]


@dataclass(frozen=True)
class StagedMatchInput:
    """matchProducts' rows (given inline or uploaded) as the submission stages them: an
    inline run and a job walk the same staged rows with the same batch step."""

    source: MatchInput

    @property
    def digest(self) -> str:
        return self.source.digest

    @property
    def known_rows(self) -> int | None:
        return self.source.rows

    async def stage(self, services: Services, tenant_id: str, params: Any) -> Selection:
        input_id = str(uuid.uuid4())
        source = self.source
        async with tenant_transaction(services.pool, tenant_id) as conn:
            await match_inputs.insert_input(conn, input_id, columns=source.columns, row_count=0)
            total = 0
            async for chunk in source.chunks():
                await match_inputs.insert_rows(conn, input_id, chunk)
                total += len(chunk)
            if total == 0:
                raise InputError("The file has no rows.", code="EMPTY_UPLOAD", field=["upload"])
            # A JSONL file's columns are known once it has been read.
            await match_inputs.set_input_size(
                conn, input_id, columns=source.columns, row_count=total
            )
        return Selection(staged=StagedRows(upload_id=input_id, digest=source.digest))

    async def discard(self, services: Services, tenant_id: str, selection: Selection) -> None:
        assert selection.staged is not None
        async with tenant_transaction(services.pool, tenant_id) as conn:
            await match_inputs.delete_input(conn, selection.staged.upload_id)


async def read_results(
    services: Services,
    tenant_id: str,
    input_id: str,
    *,
    after: int = 0,
    limit: int | None = None,
    matched: bool | None = None,
    matched_by: str | None = None,
) -> MatchResults:
    """Stored outcomes past row `after` in row order (all of them without a `limit`), with
    their products."""
    async with tenant_transaction(services.pool, tenant_id) as conn:
        rows = await matching_db.results_page(
            conn,
            input_id,
            after=after,
            limit=limit if limit is not None else MAX_ROW_NUMBER,
            matched=matched,
            matched_by=matched_by,
        )
        return MatchResults(rows, await _products_of(conn, rows))


async def _products_of(
    conn: asyncpg.Connection, rows: Sequence[ResultRow]
) -> dict[int, ProductRow]:
    ids = {r.product_id for r in rows if r.product_id is not None}
    ids.update(i for r in rows for i, _ in r.candidates)
    return {p.id: p for p in await products_db.products_by_ids(conn, sorted(ids))}


async def match_input_of_job(services: Services, tenant_id: str, job_id: str) -> str | None:
    """The staged input of a matchProducts job; None for another tenant's job or another
    operation's."""
    async with tenant_transaction(services.pool, tenant_id) as conn:
        job = await jobs_db.get_job(conn, job_id)
    if job is None or job.operation != OPERATION:
        return None
    input_id: str | None = job.params.get("input_id")
    return input_id


async def count_results(
    services: Services,
    tenant_id: str,
    input_id: str,
    *,
    matched: bool | None = None,
    matched_by: str | None = None,
) -> int:
    async with tenant_transaction(services.pool, tenant_id) as conn:
        return await matching_db.count_results(
            conn, input_id, matched=matched, matched_by=matched_by
        )


async def input_columns(services: Services, tenant_id: str, input_id: str) -> list[str] | None:
    """The columns the staged input came with; None when it is gone."""
    async with tenant_transaction(services.pool, tenant_id) as conn:
        return await match_inputs.input_columns(conn, input_id)
