"""The catalog download (GET /export/products.csv|jsonl): query parameters to a filter,
and its COPY as a stream of chunks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

import asyncpg

from bulkops.db.datasets import dataset_exists
from bulkops.db.export import ExportFormat, copy_products
from bulkops.db.pool import tenant_transaction
from bulkops.errors import InputError, NotFoundError
from bulkops.selection import PRODUCT_STATUSES, ProductFilter, parse_id
from bulkops.services.copy_stream import CopyStream

_LISTS = {"status": "status", "brand": "brand", "category": "category"}
_SINGLE = {
    "datasetId": "dataset_id",
    "skuPrefix": "sku_prefix",
    "search": "search",
    "createdAfter": "created_after",
    "createdBefore": "created_before",
}
PARAMETERS = (*_LISTS, *_SINGLE)


class BadParameterError(InputError):
    """A query parameter is not valid."""

    code = "BAD_USER_INPUT"

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message, field=[name])


def _datetime(name: str, value: str) -> datetime:
    # An unencoded "+" of an offset arrives as a space: "...T10:00:00 02:00".
    head, space, offset = value.rpartition(" ")
    candidates = [value, f"{head}+{offset}"] if space else [value]
    for candidate in candidates:
        try:
            parsed = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        # A time without an offset is taken as UTC.
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    raise BadParameterError(name, f"{name}: {value!r} is not an ISO 8601 date or date and time.")


def parse_filter(params: Iterable[tuple[str, str]]) -> ProductFilter:
    """The ProductFilter of an export's query parameters, or BadParameterError naming the
    first parameter that is unknown, repeated (when single), or not valid."""
    lists: dict[str, list[str]] = {}
    single: dict[str, str] = {}
    for name, value in params:
        if "\x00" in value:
            raise BadParameterError(name, f"{name}: a value may not contain a NUL character.")
        if name in _LISTS:
            lists.setdefault(name, []).append(value)
        elif name in _SINGLE:
            if name in single:
                raise BadParameterError(name, f"{name} may be given only once.")
            single[name] = value
        else:
            raise BadParameterError(
                name, f"Unknown parameter {name!r}; expected one of {', '.join(PARAMETERS)}."
            )
    for status in lists.get("status", []):
        if status not in PRODUCT_STATUSES:
            raise BadParameterError(
                "status",
                f"Unknown status {status!r}; expected one of {', '.join(PRODUCT_STATUSES)}.",
            )
    fields: dict[str, object] = {_LISTS[k]: tuple(v) for k, v in lists.items()}
    for name, value in single.items():
        if name == "datasetId":
            try:
                fields["dataset_id"] = parse_id(value, [name])
            except InputError:
                raise BadParameterError(name, f"datasetId: {value!r} is not a valid id.") from None
        elif name in ("createdAfter", "createdBefore"):
            fields[_SINGLE[name]] = _datetime(name, value)
        else:
            fields[_SINGLE[name]] = value
    return ProductFilter.model_validate(fields)


async def check_filter(pool: asyncpg.Pool, tenant_id: str, flt: ProductFilter) -> None:
    """NotFoundError when the filter names a dataset the tenant does not have."""
    if flt.dataset_id is None:
        return
    async with tenant_transaction(pool, tenant_id) as conn:
        if not await dataset_exists(conn, flt.dataset_id):
            raise NotFoundError(f"Dataset {flt.dataset_id} not found.", field=["datasetId"])


def catalog_stream(
    pool: asyncpg.Pool,
    tenant_id: str,
    flt: ProductFilter,
    fmt: ExportFormat,
    *,
    on_close: Callable[[], None] | None = None,
) -> CopyStream:
    """The products `flt` selects, in `fmt`, as one COPY streamed to the client."""

    async def copy(conn: asyncpg.Connection, output: Callable[[bytes], Awaitable[None]]) -> None:
        await copy_products(conn, flt, fmt, output=output)

    return CopyStream(pool, tenant_id, copy, name="export", on_close=on_close)


def export_filename(fmt: ExportFormat, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"products-{stamp}.{fmt}"
