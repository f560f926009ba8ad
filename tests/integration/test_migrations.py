"""Migrations applied to an empty database give the expected schema, once."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bulkops.db.migrate import apply_migrations, load_migrations
from bulkops.dev.embedded import EmbeddedServers
from tests.conftest import with_database

EMPTY = f"bulkops_test_{os.getpid()}_empty"
TENANT_TABLES = {
    "products",
    "product_identifiers",
    "product_images",
    "datasets",
    "dataset_products",
    "file_deletions",
    "jobs",
    "job_item_chunks",
    "job_errors",
    "import_uploads",
    "import_rows",
    "webhook_endpoints",
    "webhook_deliveries",
}


@pytest.fixture
async def empty_database(servers: EmbeddedServers) -> AsyncIterator[str]:
    assert servers.database_url
    admin = await asyncpg.connect(servers.database_url)
    await admin.execute(f"DROP DATABASE IF EXISTS {EMPTY} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {EMPTY}")
    yield with_database(servers.database_url, EMPTY)
    await admin.execute(f"DROP DATABASE IF EXISTS {EMPTY} WITH (FORCE)")
    await admin.close()


async def test_migrations_build_the_schema_with_row_level_security(empty_database: str) -> None:
    conn = await asyncpg.connect(empty_database)
    try:
        applied = await apply_migrations(conn)
        assert [m.version for m in applied] == [m.version for m in load_migrations()]
        assert await apply_migrations(conn) == []
        recorded = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        assert recorded == len(applied)
        rls = await conn.fetch(
            "SELECT relname, relrowsecurity FROM pg_class WHERE relname = ANY($1::text[])",
            sorted(TENANT_TABLES),
        )
        assert {r["relname"]: r["relrowsecurity"] for r in rls} == dict.fromkeys(
            TENANT_TABLES, True
        )
        for table in TENANT_TABLES:
            policies = await conn.fetchval(
                "SELECT count(*) FROM pg_policies WHERE tablename = $1", table
            )
            assert policies == 1, table
        grants = await conn.fetchval(
            "SELECT has_table_privilege('bulkops_app', 'api_tokens', 'SELECT')"
        )
        assert grants is False
        # The job's operation is free text checked in code, never a CHECK list.
        checks = await conn.fetch(
            """SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint
               WHERE conrelid = 'jobs'::regclass AND contype = 'c'"""
        )
        assert not any("operation" in r["def"] for r in checks)
        # Tokens carry a scope (admin for those made before scopes) and a name; jobs say
        # who created them; the application role resolves callers only through functions.
        columns = await conn.fetch(
            """SELECT table_name, column_name, is_nullable, column_default
               FROM information_schema.columns
               WHERE (table_name, column_name) IN
                     (('api_tokens', 'scope'), ('api_tokens', 'name'), ('jobs', 'created_by'))
               ORDER BY table_name, column_name"""
        )
        assert [tuple(r) for r in columns] == [
            ("api_tokens", "name", "NO", None),
            ("api_tokens", "scope", "NO", "'admin'::text"),
            ("jobs", "created_by", "YES", None),
        ]
        for function in ("authenticate_caller(bytea)", "tenant_named(text)"):
            assert await conn.fetchval(
                "SELECT has_function_privilege('bulkops_app', $1, 'EXECUTE')", function
            )
        assert not await conn.fetchval(
            "SELECT has_table_privilege('bulkops_app', 'tenants', 'SELECT')"
        )
    finally:
        await conn.close()
