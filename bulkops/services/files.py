"""The deferred removal of stored files whose rows committed batches deleted."""

from __future__ import annotations

import asyncpg

from bulkops.db.pool import tenant_transaction
from bulkops.db.storage import claim_file_deletions, delete_file_deletions
from bulkops.operations.export_products import is_export_key
from bulkops.storage import Storage

# Queue rows claimed per round: each holds the files one batch or clean-up queued (5,000
# for a deletion batch of the default size).
PURGE_ROWS = 5


async def purge_deleted_files(pool: asyncpg.Pool, storage: Storage, tenant_id: str) -> int:
    """Remove the stored files whose rows were deleted by committed batches; how many.

    Each round claims its queue rows (purges running at once take different rows), removes
    the files, then deletes the rows in the same transaction; a crash in between leaves
    the rows, and the next purge only repeats a removal (a file already missing is no
    error)."""
    removed = 0
    while True:
        async with tenant_transaction(pool, tenant_id) as conn:
            pending = await claim_file_deletions(conn, limit=PURGE_ROWS)
            if not pending:
                return removed
            keys = [key for _, batch in pending for key in batch]
            # Exports are stored in parts, found by listing; the rest are single objects,
            # removed a thousand per request.
            await storage.delete_parted([k for k in keys if is_export_key(k)])
            await storage.delete_many([k for k in keys if not is_export_key(k)])
            removed += len(keys)
            await delete_file_deletions(conn, [row_id for row_id, _ in pending])
        if len(pending) < PURGE_ROWS:
            return removed
