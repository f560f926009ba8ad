"""A job's failed items as one `COPY ... TO STDOUT`: CSV with a header, in the order
`Job.errors` pages through them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

_SELECT_ERRORS = """SELECT item_id, row_number AS "row", column_name AS "column", code, message
FROM job_errors
WHERE job_id = $1 AND tenant_id = current_tenant_id()
ORDER BY id"""


async def copy_errors(
    conn: asyncpg.Connection, job_id: str, *, output: Callable[[bytes], Awaitable[None]]
) -> None:
    """Copy the job's item errors to `output`, chunk by chunk (empty cells for no item id,
    row or column)."""
    await conn.copy_from_query(_SELECT_ERRORS, job_id, output=output, format="csv", header=True)
