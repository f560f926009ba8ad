"""fetchProductImages' sources, from the `sources` argument or an uploaded CSV or JSONL
file, as the submission stages them.

A bad source given inline refuses the request, naming it (`["sources", i, "url"]`); a bad
row of an uploaded file is staged with its error and reported as an item error naming its
row and column, as matchProducts and importProducts treat their rows. A file that cannot
be read at all (not CSV or JSONL, empty, no url column) refuses the request."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

from bulkops.db import image_sources as sources_db
from bulkops.db.image_sources import StagedSource
from bulkops.db.pool import tenant_transaction
from bulkops.errors import InputError
from bulkops.operations.fetch_product_images import (
    PRODUCT_ID_COLUMNS,
    SKU_COLUMN,
    URL_COLUMN,
    SourceError,
    check_source,
    stage_source,
)
from bulkops.selection import Selection, StagedRows
from bulkops.services.container import Services
from bulkops.uploads import (
    RowError,
    RowReader,
    UploadError,
    UploadFormat,
    chunked,
    file_digest,
    open_upload,
    read_ahead,
)

CHUNK_ROWS = 5000
FIELD_OF = {"url": "url", "sku": "sku", "productId": "productId"}


@dataclass
class ImageSources:
    """Sources to stage: `chunks` yields them in row order, once; `digest` says which input
    it is (for idempotency keys); `known_rows` is known up front for inline sources."""

    digest: str
    source: Iterator[list[StagedSource]]
    known_rows: int | None = None
    # A file is read and parsed in a thread, so that the event loop keeps serving.
    threaded: bool = False

    async def chunks(self) -> AsyncIterator[list[StagedSource]]:
        if self.threaded:
            async with aclosing(read_ahead(self.source)) as parsed:
                async for chunk in parsed:
                    yield chunk
            return
        for chunk in self.source:
            yield chunk

    async def stage(self, services: Services, tenant_id: str, params: Any) -> Selection:
        source_id = str(uuid.uuid4())
        async with tenant_transaction(services.pool, tenant_id) as conn:
            await sources_db.insert_source(conn, source_id)
            total = 0
            async for chunk in self.chunks():
                await sources_db.insert_rows(conn, source_id, chunk)
                total += len(chunk)
            if total == 0:
                raise UploadError("The file has no rows.", code="EMPTY_UPLOAD")
            await sources_db.set_size(conn, source_id, total)
        return Selection(staged=StagedRows(upload_id=source_id, digest=self.digest))

    async def discard(self, services: Services, tenant_id: str, selection: Selection) -> None:
        assert selection.staged is not None
        async with tenant_transaction(services.pool, tenant_id) as conn:
            await sources_db.delete_source(conn, selection.staged.upload_id)


def inline_sources(
    sources: Sequence[Mapping[str, Any]], *, limit: int, allow_private_networks: bool
) -> ImageSources:
    """The `sources` argument (each with productId, sku, url), numbered by position from 1.
    Raises InputError naming the first bad source and its field."""
    if not sources:
        raise InputError("Give at least one source.", code="EMPTY_SOURCES", field=["sources"])
    if len(sources) > limit:
        raise InputError(
            f"{len(sources)} sources is more than the {limit} the sources argument takes; "
            "upload them as a CSV or JSONL file instead.",
            code="TOO_MANY_SOURCES",
            field=["sources"],
        )
    staged: list[StagedSource] = []
    for index, given in enumerate(sources):
        try:
            pid, sku, url = check_source(
                given.get("productId"),
                given.get("sku"),
                given.get("url"),
                allow_private_networks=allow_private_networks,
            )
        except SourceError as exc:
            field = ["sources", str(index)]
            if exc.field is not None:
                field.append(FIELD_OF[exc.field])
            raise InputError(
                f"sources[{index}]: {exc.message}", code=exc.code, field=field
            ) from None
        staged.append(StagedSource(index + 1, pid, sku, url))
    digest = hashlib.sha256()
    for row in staged:
        digest.update(json.dumps(asdict(row), sort_keys=True).encode())
    chunks = (staged[i : i + CHUNK_ROWS] for i in range(0, len(staged), CHUNK_ROWS))
    return ImageSources(digest.hexdigest(), chunks, known_rows=len(staged))


async def upload_sources(
    file: BinaryIO, filename: str | None, *, allow_private_networks: bool
) -> ImageSources:
    """An uploaded file, checked when opened (UploadError, on the field `upload`: not CSV
    or JSONL, empty, a header without url or without sku/productId) and then read as it
    is staged."""
    return await asyncio.to_thread(_open, file, filename, allow_private_networks)


def _open(file: BinaryIO, filename: str | None, allow_private_networks: bool) -> ImageSources:
    digest = file_digest(file)
    reader = open_upload(file, filename=filename)
    if reader.format is UploadFormat.CSV:
        columns = {c.strip().lower() for c in reader.columns or ()}
        if URL_COLUMN not in columns or not columns & {SKU_COLUMN, *PRODUCT_ID_COLUMNS}:
            raise UploadError(
                "The header needs a url column and a sku or productId column.",
                code="INVALID_HEADER",
            )
    rows = _staged_rows(reader, allow_private_networks)
    return ImageSources(digest, chunked(rows, CHUNK_ROWS), threaded=True)


def _staged_rows(reader: RowReader, allow_private_networks: bool) -> Iterator[StagedSource]:
    for item in reader:
        if isinstance(item, RowError):
            where = f" (column {item.column})" if item.column else ""
            message = f"Row {item.row}{where} {item.reason}."
            yield StagedSource(item.row, None, None, None, item.code, item.column, message)
        else:
            yield stage_source(
                item.number, item.values, allow_private_networks=allow_private_networks
            )
