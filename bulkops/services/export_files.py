"""Export files (written by exportProducts): their rows and their signed download links."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bulkops.db.export_files import get_files
from bulkops.db.pool import tenant_transaction
from bulkops.models import ExportFileRow
from bulkops.operations.export_products import storage_key
from bulkops.services.container import Services
from bulkops.services.signing import signature, valid_signature

__all__ = ["storage_key"]

MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
}


@dataclass(frozen=True)
class FileLink:
    url: str
    expires_at: datetime


def download_path(tenant_id: str, file_id: str, fmt: str) -> str:
    return f"/exports/{tenant_id}/{file_id}.{fmt}"


def link(key: bytes, base_url: str, file: ExportFileRow) -> FileLink:
    """The file's signed download link; it works until the file expires."""
    expires = int(file.expires_at.timestamp())
    path = download_path(file.tenant_id, file.id, file.format)
    sig = signature(key, path=path, tenant_id=file.tenant_id, expires=expires)
    return FileLink(
        f"{base_url.rstrip('/')}{path}?expires={expires}&signature={sig}",
        datetime.fromtimestamp(expires, UTC),
    )


def check_link(key: bytes, *, path: str, tenant_id: str, expires: str, given: str) -> str:
    """'ok', 'forbidden' (not a link the service made) or 'expired'."""
    if not expires.isdigit() or len(expires) > 12:
        return "forbidden"
    when = int(expires)
    if not valid_signature(key, given, path=path, tenant_id=tenant_id, expires=when):
        return "forbidden"
    if when <= datetime.now(UTC).timestamp():
        return "expired"
    return "ok"


async def file_row(services: Services, tenant_id: str, file_id: str) -> ExportFileRow | None:
    async with tenant_transaction(services.pool, tenant_id) as conn:
        found = await get_files(conn, [file_id])
    return found[0] if found else None
