"""The embedded PostgreSQL of the tests runs without waiting for its disk.

Every test gets its own database, copied from a template and dropped afterwards, and most
tests commit many small transactions: with fsync on, each drop and many commits wait for
the disk (hundreds of milliseconds a test on a busy machine). The server is the tests'
own and thrown away, so what a power cut would lose does not matter; what a client sees
(results, visibility, locks, errors) is the same. A server given by
BULKOPS_TEST_DATABASE_URL is left as it is."""

from __future__ import annotations

import asyncpg

SETTINGS = {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}
# Without fsync, copying the template's files is the quickest way to a new database (with
# fsync it would force a checkpoint for each copy).
CREATE_STRATEGY = "FILE_COPY"


async def skip_disk_waits(admin_url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        for name, value in SETTINGS.items():
            await conn.execute(f"ALTER SYSTEM SET {name} = {value}")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()
