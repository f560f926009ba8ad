"""importProducts: create or update products, by SKU, from an uploaded CSV or JSONL file.

Its items are the file's rows, staged when the request is accepted (see
services/imports.py) and walked in row order, inline and in a job alike: the selection is
`Selection(staged=...)`, and an item id is a staged row's id. A batch checks its rows
set-based, reports each bad one as an item error naming its row and column, and upserts
the good ones with one statement (and their identifiers with another). The staged rows go
when the job ends."""

from __future__ import annotations

import asyncpg

from bulkops.db import import_batch
from bulkops.db import imports as imports_db
from bulkops.models import ItemFailure
from bulkops.operations.base import (
    BatchContext,
    BatchOutcome,
    Counter,
    NoParams,
    Operation,
    Retry,
    Thresholds,
)
from bulkops.operations.update_products import UNIQUE_IDENTIFIER_KINDS
from bulkops.selection import Selection

_RETRIES = 3

# The wording of each check of the batch step (db/import_batch.py); {0}, {1}... are its
# details.
_CHECKS: dict[str, tuple[str, str]] = {
    "missing": ("MISSING_VALUE", "A SKU is required."),
    "name_required": ("MISSING_VALUE", "SKU {0!r} is new: a new product needs a name."),
    "too_long": ("VALUE_TOO_LONG", "The value is longer than {0} characters."),
    "status": ("INVALID_STATUS", "{0!r} is not a status: DRAFT, ACTIVE or ARCHIVED."),
    "price_number": ("INVALID_PRICE", "{0!r} is not a number (write 12.90)."),
    "price_negative": ("INVALID_PRICE", "{0!r} is negative; a price is 0 or more."),
    "price_max": ("INVALID_PRICE", f"{{0!r}} is above the maximum, {import_batch.MAX_PRICE}."),
    "price_scale": ("INVALID_PRICE", "{0!r} has more than 2 decimal places."),
    "attributes_json": ("INVALID_ATTRIBUTES", "The attributes are not valid JSON."),
    "attributes_object": (
        "INVALID_ATTRIBUTES",
        "The attributes are a JSON {0}; they must be an object of keys and values.",
    ),
    "identifier_kind_blank": ("INVALID_IDENTIFIER", "An identifier kind is blank."),
    "identifier_barcode": (
        "INVALID_IDENTIFIER",
        "BARCODE is not an identifier kind: give it in the barcode column.",
    ),
    "identifier_kind_long": (
        "INVALID_IDENTIFIER",
        f"The identifier kind {{0}} is longer than {import_batch.MAX_KIND_LENGTH} characters.",
    ),
    "identifier_value_long": (
        "INVALID_IDENTIFIER",
        f"The {{0}} value is longer than {import_batch.MAX_TEXT_LENGTH} characters.",
    ),
    "identifier_taken": ("IDENTIFIER_TAKEN", "{0} {1!r} already belongs to product {2} ({3!r})."),
}


class ImportProducts(Operation[NoParams]):
    name = "importProducts"
    description = (
        "Create or update products by SKU from an uploaded CSV or JSONL file; rows that "
        "cannot be imported are reported with their row and column, the others land."
    )
    thresholds = Thresholds(inline_threshold=1000, inline_limit=10_000, batch_size=5000)
    params_model = NoParams
    counters = (Counter("created"), Counter("updated"))
    summary_description = (
        "Items are the file's rows: matched counts them, succeeded the products created or "
        "changed, skipped the rows that would change nothing, failed the rows that cannot be "
        "imported (errors name their row and column). A dry run's sample shows only existing "
        "products."
    )
    retry = Retry.NEVER
    not_retryable = (
        "An import cannot be retried: its staged rows went when it ended. Upload the file "
        "again (rows already imported are skipped)."
    )

    async def count(self, conn: asyncpg.Connection, selection: Selection) -> int:
        assert selection.staged is not None
        return await imports_db.row_count(conn, selection.staged.upload_id)

    async def filter_batch(
        self, conn: asyncpg.Connection, selection: Selection, *, after: int, limit: int
    ) -> list[int]:
        assert selection.staged is not None
        return await imports_db.batch_ids(
            conn, selection.staged.upload_id, after=after, limit=limit
        )

    async def release(self, conn: asyncpg.Connection, selection: Selection) -> None:
        if selection.staged is not None:
            await imports_db.drop_upload(conn, selection.staged.upload_id)

    async def apply_batch(
        self, ctx: BatchContext, params: NoParams, ids: list[int]
    ) -> BatchOutcome:
        conn = ctx.conn
        for attempt in range(_RETRIES):
            try:
                # A savepoint: a unique identifier value that another transaction gave
                # out between the check and the write is found by the next check.
                async with conn.transaction():
                    return await _import_batch(conn, ids)
            except asyncpg.UniqueViolationError:
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")


async def _import_batch(conn: asyncpg.Connection, ids: list[int]) -> BatchOutcome:
    await import_batch.refresh_statistics(conn)
    rows = await import_batch.staged_rows(conn, ids, UNIQUE_IDENTIFIER_KINDS)
    skus = sorted({r.sku for r in rows if r.sku is not None and not _sku_failed(r)})
    products = await import_batch.lock_products(conn, skus)
    failures = await _failures(conn, rows, products)
    good = [r for r in rows if r.id not in failures]
    changed, created = await _write(conn, good, products)
    errors = [_failure(r.row, failures[r.id]) for r in rows if r.id in failures]
    return BatchOutcome(
        succeeded=len(changed),
        failed=len(errors),
        # Rows that would change nothing, and rows staged no more (a job's rows cannot go
        # while it runs; this is only defensive).
        skipped=len(ids) - len(errors) - len(changed),
        errors=errors,
        counters={"created": created, "updated": len(changed) - created},
        changed_ids=changed,
    )


async def _failures(
    conn: asyncpg.Connection,
    rows: list[import_batch.StagedRow],
    products: dict[str, import_batch.Product],
) -> dict[int, tuple[str | None, ...]]:
    """Why each row that cannot be imported cannot, by staged row id."""
    failures = {r.id: f for r in rows if (f := _first_failure(r, products)) is not None}
    unique = [
        (kind, value)
        for r in rows
        if r.id not in failures
        for kind, value, _ in r.unique_identifiers
    ]
    holders = await import_batch.identifier_holders(conn, unique)
    for r in rows:
        if r.id not in failures and (taken := _taken(r, products, holders)) is not None:
            failures[r.id] = taken
    return failures


async def _write(
    conn: asyncpg.Connection,
    good: list[import_batch.StagedRow],
    products: dict[str, import_batch.Product],
) -> tuple[list[int], int]:
    """Upsert the good rows and their identifiers: the products changed (in row order)
    and how many of them are new."""
    upserted = {
        u.sku: u
        for u in await import_batch.upsert_products(
            conn, [(r.id, products.get(r.sku or "")) for r in good]
        )
    }
    ids_of = {sku: p.id for sku, p in products.items()} | {s: u.id for s, u in upserted.items()}
    # A new SKU that another transaction created since this one looked, with these values.
    missing = [sku for r in good if (sku := r.sku or "") not in ids_of]
    if missing:
        ids_of |= await import_batch.product_ids(conn, missing)
    retagged = await import_batch.set_identifiers(
        conn, [(r.id, ids_of[sku]) for r in good if (sku := r.sku or "") in ids_of]
    )
    # A product whose identifiers alone changed is updated too.
    touched = retagged - {u.id for u in upserted.values()}
    await import_batch.touch_products(conn, sorted(touched))
    changed = [
        ids_of[sku] for r in good if (sku := r.sku or "") in upserted or ids_of.get(sku) in touched
    ]
    return changed, sum(u.created for u in upserted.values())


def _failure(row: int, failure: tuple[str | None, ...]) -> ItemFailure:
    check, column, *details = failure
    if check == "staged":
        code, message = details
        assert code is not None and message is not None
        return ItemFailure(code, message, row=row, column=column)
    assert check is not None
    code, template = _CHECKS[check]
    return ItemFailure(code, template.format(*details), row=row, column=column)


def _first_failure(
    row: import_batch.StagedRow, products: dict[str, import_batch.Product]
) -> tuple[str | None, ...] | None:
    """The row's first failure in column order: a new SKU needs a name, checked after the
    SKU's own checks and before the other columns'."""
    if _sku_failed(row):
        return row.failure
    if not row.has_name and row.sku not in products:
        return ("name_required", "name", row.sku)
    return row.failure


def _sku_failed(row: import_batch.StagedRow) -> bool:
    """Whether the row failed before its SKU could name a product."""
    return row.failure is not None and (row.failure[0] == "staged" or row.failure[1] == "sku")


def _taken(
    row: import_batch.StagedRow,
    products: dict[str, import_batch.Product],
    holders: dict[tuple[str, str], tuple[int, str]],
) -> tuple[str | None, ...] | None:
    own = _product_id(row, products)
    for kind, value, column in row.unique_identifiers:
        holder = holders.get((kind, value))
        if holder is not None and holder[0] != own:
            return ("identifier_taken", column, kind, value, str(holder[0]), holder[1])
    return None


def _product_id(
    row: import_batch.StagedRow, products: dict[str, import_batch.Product]
) -> int | None:
    product = products.get(row.sku or "")
    return product.id if product is not None else None
