"""deleteImages: remove product images and their stored files.

Its items are images, not products: a selection of image ids, or every image of the
products a filter matches (explicit product ids become their image ids when the request
is accepted, see services/images.py)."""

from __future__ import annotations

import asyncpg

from bulkops.db import images as images_db
from bulkops.db.datasets import dataset_exists
from bulkops.errors import NotFoundError
from bulkops.models import ProductRow
from bulkops.operations.base import (
    BatchContext,
    BatchOutcome,
    Counter,
    NoParams,
    Operation,
    Thresholds,
)
from bulkops.selection import Selection


class DeleteImages(Operation[NoParams]):
    # Its items are images: what it deleted is no selection of products.
    changed_products = False
    name = "deleteImages"
    description = (
        "Delete images and their stored files; images already gone are skipped, files "
        "already missing are counted."
    )
    thresholds = Thresholds(inline_threshold=1000, inline_limit=10_000, batch_size=5000)
    params_model = NoParams
    counters = (
        Counter(
            "deletedFiles",
            "Stored files that existed when their batch ran; removed after it committed (or, "
            "in a dry run, that would be).",
        ),
        Counter("missingFiles", "Stored files already gone when their batch ran (not an error)."),
    )
    summary_description = (
        "Items are images: matched, succeeded and skipped count images; sample shows the "
        "products that lose them."
    )
    deletes_files = True

    async def count(self, conn: asyncpg.Connection, selection: Selection) -> int:
        if selection.ids is not None:
            missing = await images_db.missing_image_ids(conn, list(selection.ids))
            if missing:
                shown = ", ".join(str(i) for i in missing[:10])
                more = " and more" if len(missing) > 10 else ""
                raise NotFoundError(f"No image with id {shown}{more}.", field=["selection", "ids"])
            return len(selection.ids)
        flt = selection.filter
        if (
            flt is not None
            and flt.dataset_id is not None
            and not await dataset_exists(conn, flt.dataset_id)
        ):
            raise NotFoundError(
                f"Dataset {flt.dataset_id} does not exist.",
                field=["selection", "products", "filter", "datasetId"],
            )
        return await images_db.count_images_of(conn, flt)

    async def filter_batch(
        self, conn: asyncpg.Connection, selection: Selection, *, after: int, limit: int
    ) -> list[int]:
        return await images_db.image_batch_ids(conn, selection.filter, after=after, limit=limit)

    async def sample(self, conn: asyncpg.Connection, ids: list[int]) -> list[ProductRow]:
        """The products that lose (or, in a dry run, would lose) the images `ids`."""
        return await images_db.owners_of_images(conn, ids)

    async def apply_batch(
        self, ctx: BatchContext, params: NoParams, ids: list[int]
    ) -> BatchOutcome:
        conn = ctx.conn
        # Which files exist is checked while the rows are locked, and those are queued
        # with the deletion and removed after the commit. Files are only ever removed by
        # that purge, so a file present now is one this deletion removes, and a file
        # missing now was gone already (counted, not an error).
        rows = await conn.fetch(
            """WITH target AS (
                 SELECT id, storage_key FROM product_images
                 WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
                 ORDER BY id FOR UPDATE)
               SELECT t.id, t.storage_key,
                      NOT EXISTS (SELECT 1 FROM product_images o
                                  WHERE o.storage_key = t.storage_key
                                    AND o.tenant_id = current_tenant_id()
                                    AND o.id <> ALL($1::bigint[])) AS last_use
               FROM target t""",
            ids,
        )
        # A file that another image still shows is kept.
        keys = sorted({r["storage_key"] for r in rows if r["last_use"]})
        found = await ctx.storage.existing(keys)
        present = [key for key in keys if key in found]
        row = await conn.fetchrow(
            """WITH gone AS (
                 DELETE FROM product_images
                 WHERE id = ANY($1::bigint[]) AND tenant_id = current_tenant_id()
                 RETURNING id),
               queued AS (
                 INSERT INTO file_deletions (storage_keys)
                 SELECT $2::text[] WHERE cardinality($2::text[]) > 0
                 RETURNING cardinality(storage_keys) AS files)
             SELECT ARRAY(SELECT id FROM gone ORDER BY id) AS deleted,
                    (SELECT COALESCE(sum(files), 0) FROM queued) AS queued""",
            [r["id"] for r in rows],
            present,
        )
        deleted: list[int] = row["deleted"]
        return BatchOutcome(
            succeeded=len(deleted),
            # An image already gone was deleted by someone else: nothing left to do.
            skipped=len(ids) - len(deleted),
            counters={
                "deletedFiles": row["queued"],
                "missingFiles": len(keys) - len(present),
                # Also what tells the worker that this batch queued files to remove.
                "deletedImages": len(deleted),
            },
            changed_ids=deleted,
        )
