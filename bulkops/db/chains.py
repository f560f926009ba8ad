"""Chains in the database: the products a step's outcome holds, the next step's items
made from them, and the link from a step to the next."""

from __future__ import annotations

import asyncpg

from bulkops.models import JobState


async def record_outcome(conn: asyncpg.Connection, job_id: str, ids: list[int]) -> None:
    """Add `ids` to the job's outcome set (a batch run again adds nothing twice)."""
    await conn.execute(
        """INSERT INTO job_outcomes (job_id, item_id)
           SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING""",
        job_id,
        ids,
    )


async def items_from_outcome(conn: asyncpg.Connection, source: str, target: str) -> int:
    """The job `target`'s items are the products of `source`'s outcome that still exist;
    how many."""
    stored: int = await conn.fetchval(
        """SELECT store_job_items($2, ARRAY(
             SELECT o.item_id FROM job_outcomes o
             WHERE o.job_id = $1 AND o.tenant_id = current_tenant_id()
               AND EXISTS (SELECT 1 FROM products p
                           WHERE p.id = o.item_id AND p.tenant_id = current_tenant_id())
             ORDER BY o.item_id))""",
        source,
        target,
    )
    return stored


async def copy_outcome(conn: asyncpg.Connection, source: str, target: str) -> None:
    """A retry's outcome starts as its parent's: what the parent did still counts."""
    await conn.execute(
        """INSERT INTO job_outcomes (job_id, item_id)
           SELECT $2, item_id FROM job_outcomes
           WHERE job_id = $1 AND tenant_id = current_tenant_id()""",
        source,
        target,
    )


async def link_next(conn: asyncpg.Connection, job_id: str, next_id: str) -> JobState:
    """Point the ended step to its next step's job."""
    row = await conn.fetchrow(
        """UPDATE jobs SET next_id = $2 WHERE id = $1 AND tenant_id = current_tenant_id()
           RETURNING *""",
        job_id,
        next_id,
    )
    return JobState.from_row(row)


async def following_live_step(conn: asyncpg.Connection, job_id: str) -> str | None:
    """The first unfinished job along the chain after `job_id`, or None."""
    found: str | None = await conn.fetchval(
        """WITH RECURSIVE steps AS (
             SELECT next_id AS id, 1 AS depth FROM jobs
             WHERE id = $1 AND tenant_id = current_tenant_id()
             UNION ALL
             SELECT j.next_id, s.depth + 1 FROM steps s JOIN jobs j ON j.id = s.id
             WHERE j.tenant_id = current_tenant_id() AND s.depth < 100)
           SELECT j.id::text FROM steps s JOIN jobs j ON j.id = s.id
           WHERE j.tenant_id = current_tenant_id()
             AND j.status NOT IN ('CANCELLED', 'SUCCEEDED', 'PARTIAL', 'FAILED')
           ORDER BY s.depth LIMIT 1""",
        job_id,
    )
    return found
