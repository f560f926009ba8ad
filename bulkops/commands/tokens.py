"""`bulkops token list` and `bulkops token revoke`: API tokens, read and revoked in the
database as its owner (the API cannot list tokens: it only ever sees one token's hash)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import asyncpg
from rich.table import Table

from bulkops.commands.client import CommandError, ExitCode
from bulkops.commands.output import console, when
from bulkops.config import Settings
from bulkops.db.tenants import list_tokens, matching_tokens, revoke_token
from bulkops.models import TokenRow
from bulkops.services.auth import hash_token

# How long an API process may keep accepting a token it looked up just before its revocation.
AUTH_CACHE_SECONDS = 30


async def _connect(settings: Settings) -> asyncpg.Connection:
    assert settings.database_url
    try:
        return await asyncpg.connect(settings.database_url, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise CommandError(
            f"cannot reach the database ({exc}); is `bulkops dev` running, or DATABASE_URL set?",
            ExitCode.UNREACHABLE,
        ) from None


async def _tokens(settings: Settings, tenant: str) -> list[TokenRow]:
    conn = await _connect(settings)
    try:
        found = await list_tokens(conn, tenant)
    finally:
        await conn.close()
    if found is None:
        raise CommandError(f"no tenant {tenant!r}")
    return found


def show_tokens(args: argparse.Namespace, settings: Settings) -> int:
    table = Table("name", "scope", "hash", "created (UTC)", "revoked (UTC)")
    for token in asyncio.run(_tokens(settings, args.tenant)):
        table.add_row(
            token.name,
            token.scope,
            token.hash_prefix,
            when(token.created_at),
            when(token.revoked_at),
        )
    console().print(table)
    return ExitCode.OK


async def _revoke(settings: Settings, key: str, tenant: str | None) -> TokenRow:
    conn = await _connect(settings)
    try:
        async with conn.transaction():
            found = await matching_tokens(conn, key, hash_token(key), tenant=tenant)
            if not found:
                where = f" of tenant {tenant!r}" if tenant else ""
                raise CommandError(f"no active token{where} is named or starts with {key!r}")
            if len(found) > 1:
                names = ", ".join(f"{t.tenant_name}/{t.name} ({t.hash_prefix})" for _, t in found)
                raise CommandError(
                    f"{key!r} matches {len(found)} tokens: {names}; give a longer hash "
                    "prefix, or --tenant"
                )
            token_id, token = found[0]
            await revoke_token(conn, token_id)
    finally:
        await conn.close()
    return token


def revoke(args: argparse.Namespace, settings: Settings) -> int:
    token = asyncio.run(_revoke(settings, args.token_key, args.tenant))
    print(f"revoked {token.tenant_name}/{token.name} ({token.scope}, hash {token.hash_prefix})")
    return ExitCode.OK


def add_parsers(token: Any) -> None:
    """`list` and `revoke` under `bulkops token`."""
    p = token.add_parser("list", help="a tenant's tokens: name, scope, hash prefix, dates")
    p.add_argument("--tenant", required=True, help="the tenant's name")
    p.set_defaults(handler=show_tokens, needs_database=True)
    p = token.add_parser(
        "revoke",
        help="revoke one token, named by its name or the start of its hash",
        description="Revoke one token. A running API refuses it within "
        f"{AUTH_CACHE_SECONDS} s; open websockets keep their subscriptions.",
    )
    p.add_argument(
        "token_key",
        metavar="TOKEN_NAME_OR_PREFIX",
        help="the token's name, the start of its hash (at least 4 hex digits, as "
        "`token list` shows), or the token itself",
    )
    p.add_argument("--tenant", default=None, help="only this tenant's tokens")
    p.set_defaults(handler=revoke, needs_database=True)
