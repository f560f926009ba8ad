"""exportProducts: the products a filter selects, written to a stored CSV or JSONL file.

The file is written batch by batch in id order, each batch one `COPY ... TO STDOUT`
stored as one part of it (bulkops.storage), named by the byte offset it starts at. Its row
(db/export_files.py) records the size that committed batches wrote, in the batch's own
transaction: a batch re-run after a crash writes its part at the same offset again,
replacing what the lost attempt wrote, and a part past the recorded size is not part of
the file, so every row is in the file exactly once. The file's row and its first part (the
CSV header) are made when the request is accepted; see services/export_files.py."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, Field

from bulkops.db import products as products_db
from bulkops.db.datasets import dataset_exists
from bulkops.db.export import copy_products_by_ids, csv_header
from bulkops.db.export_files import insert_file, lock_file, record_batch
from bulkops.errors import NotFoundError
from bulkops.operations.base import (
    BatchContext,
    BatchOutcome,
    JobAborted,
    Operation,
    Retry,
    Thresholds,
)
from bulkops.selection import Selection

EXPORTS_PREFIX = "exports/"


def storage_key(tenant_id: str, file_id: str, fmt: str) -> str:
    """Where an export file is stored (its parts are under it)."""
    return f"{EXPORTS_PREFIX}{tenant_id}/{file_id}.{fmt}"


def is_export_key(key: str) -> bool:
    """Whether the stored file is an export, written in parts."""
    return key.startswith(EXPORTS_PREFIX)


class ExportParams(BaseModel):
    format: Literal["csv", "jsonl"] = "csv"
    file_id: str
    # How long the download link works, counted from the end of the writing.
    link_seconds: float = Field(gt=0)


class ExportProducts(Operation[ExportParams]):
    name = "exportProducts"
    description = (
        "Write the products a filter selects to a CSV (with a header) or JSONL file, in id "
        "order, and give a signed download link that expires."
    )
    # A batch is one COPY of its rows: cheap, so batches are large and small exports run
    # inline.
    thresholds = Thresholds(inline_threshold=10_000, inline_limit=100_000, batch_size=10_000)
    params_model = ExportParams
    summary_description = (
        "Items are products: matched counts the selection, succeeded the rows written, "
        "skipped products deleted while the file was written. A dry run writes no file."
    )
    summary_extras = ("resultFile",)
    retry = Retry.NEVER
    not_retryable = (
        "An export is not retried: its file is written once. Call exportProducts again for a "
        "new file."
    )

    dry_run_applies = False

    def bind(self, raw: dict[str, Any], selection: Selection) -> dict[str, Any]:
        """Each request names a new file."""
        return {**raw, "file_id": str(uuid.uuid4())}

    async def prepare(self, ctx: BatchContext, params: ExportParams) -> None:
        """The file's row and its first part, the CSV header (empty for JSONL): an empty
        selection is still a file."""
        key = storage_key(ctx.tenant_id, params.file_id, params.format)
        header = csv_header() if params.format == "csv" else b""
        await insert_file(
            ctx.conn,
            params.file_id,
            storage_key=key,
            fmt=params.format,
            size=len(header),
            link_seconds=params.link_seconds,
        )
        await ctx.storage.write_part(key, 0, header)

    async def count(self, conn: asyncpg.Connection, selection: Selection) -> int:
        flt = selection.filter
        if (
            flt is not None
            and flt.dataset_id is not None
            and not await dataset_exists(conn, flt.dataset_id)
        ):
            raise NotFoundError(
                f"Dataset {flt.dataset_id} does not exist.", field=["filter", "datasetId"]
            )
        return await products_db.count_filter(conn, flt)

    async def apply_batch(
        self, ctx: BatchContext, params: ExportParams, ids: list[int]
    ) -> BatchOutcome:
        conn = ctx.conn
        state = await lock_file(conn, params.file_id)
        if state is None:
            raise JobAborted("The export file was removed.", code="EXPORT_FILE_LOST")
        if ids[0] <= state.last_id:
            # Not a batch redone after a crash (that one starts past the committed cursor,
            # recorded here with it): a retried job naming a file already written.
            raise JobAborted(
                "This export's file is already written: run exportProducts again for a new one.",
                code="EXPORT_ALREADY_WRITTEN",
            )
        chunks: list[bytes] = []

        async def write(chunk: bytes) -> None:
            chunks.append(chunk)

        copied = await copy_products_by_ids(conn, ids, params.format, output=write)
        data = b"".join(chunks)
        # Stored before the size is recorded as committed; a re-run replaces it.
        await ctx.storage.write_part(state.storage_key, state.bytes, data)
        size = state.bytes + len(data)
        await record_batch(
            conn,
            params.file_id,
            rows=copied,
            size=size,
            last_id=ids[-1],
            link_seconds=params.link_seconds,
        )
        return BatchOutcome(succeeded=copied, skipped=len(ids) - copied, changed_ids=ids)
