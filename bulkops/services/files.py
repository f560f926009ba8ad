"""The deferred removal of stored files whose rows committed batches deleted."""

from __future__ import annotations

import asyncio

import asyncpg

from bulkops.db.pool import tenant_transaction
from bulkops.db.storage import claim_file_deletions, delete_file_deletions
from bulkops.storage import Storage

PURGE_BATCH = 5000
PURGE_THREADS = 4


async def purge_deleted_files(pool: asyncpg.Pool, storage: Storage, tenant_id: str) -> int:
    """Remove the stored files whose rows were deleted by committed batches.

    Each round claims its queue rows (purges running at once take different rows), removes
    the files, then deletes the rows in the same transaction; a crash in between leaves
    the rows, and the next purge only repeats an unlink."""
    removed = 0
    while True:
        async with tenant_transaction(pool, tenant_id) as conn:
            pending = await claim_file_deletions(conn, limit=PURGE_BATCH)
            if not pending:
                return removed
            keys = [key for _, key in pending]
            # Unlinking is I/O-bound: a few threads overlap the filesystem's latency.
            chunks = [keys[i::PURGE_THREADS] for i in range(PURGE_THREADS)]
            done = await asyncio.gather(
                *(asyncio.to_thread(storage.delete_many, c) for c in chunks)
            )
            removed += sum(done)
            await delete_file_deletions(conn, [row_id for row_id, _ in pending])
        if len(pending) < PURGE_BATCH:
            return removed
