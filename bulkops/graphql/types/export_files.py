"""The file an exportProducts run wrote, behind its signed link."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from bulkops.graphql.enums import ExportFormat
from bulkops.graphql.types.common import Info
from bulkops.models import ExportFileRow
from bulkops.services import export_files
from bulkops.services.signing import signing_key


@strawberry.type(
    description="A file a job wrote, through a signed link that needs no token and works "
    "until expiresAt; the file is removed after that."
)
class ResultFile:
    url: str
    expires_at: datetime
    rows: int
    bytes: int
    format: ExportFormat


def file_of(info: Info, file: ExportFileRow) -> ResultFile | None:
    """The file as the API shows it, with a link signed for this API's address; None once
    it has expired."""
    if file.expires_at <= datetime.now(UTC):
        return None
    request = info.context.request
    base = str(request.base_url)
    # A subscription's request is a websocket: its link is for plain HTTP(S) all the same.
    if base.startswith("ws"):
        base = "http" + base[2:]
    link = export_files.link(signing_key(info.context.services.settings), base, file)
    return ResultFile(
        url=link.url,
        expires_at=link.expires_at,
        rows=file.rows,
        bytes=file.bytes,
        format=ExportFormat(file.format.upper()),
    )


async def result_file(info: Info, file_id: str) -> ResultFile | None:
    """An export job's file; None once it has expired or been removed."""
    file = await export_files.file_row(info.context.services, info.context.tenant, file_id)
    return file_of(info, file) if file is not None else None
