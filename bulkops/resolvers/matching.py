"""matchProducts and the results of a match job."""

from __future__ import annotations

from typing import Any

import strawberry
from starlette.datastructures import UploadFile
from strawberry.exceptions import StrawberryGraphQLError
from strawberry.file_uploads import Upload

from bulkops.db.matching import ResultRow
from bulkops.errors import InputError
from bulkops.models import ProductRow
from bulkops.operations import get_operation
from bulkops.operations.match_products import MATCHED_BY
from bulkops.resolvers.bulk import payload, rejected, services, summary, to_options
from bulkops.resolvers.paging import int_cursor, page_size
from bulkops.schema.inputs import BulkOptions, MatchRowInput
from bulkops.schema.types import (
    Info,
    MatchProductsSummary,
    MatchRow,
    MatchRowConnection,
    MatchRowEdge,
    PageInfo,
    Product,
    encode_cursor,
)
from bulkops.selection import parse_id
from bulkops.services import matching
from bulkops.services.bulk import QueuedResult
from bulkops.services.match_input import inline_input, upload_input


def _row_values(row: MatchRowInput) -> dict[str, Any]:
    return {
        "row": row.row,
        "barcode": row.barcode,
        "sku": row.sku,
        "name": row.name,
        "brand": row.brand,
        "identifiers": (
            [{"kind": i.kind, "value": i.value} for i in row.identifiers]
            if row.identifiers is not None
            else None
        ),
    }


async def match_products(
    info: Info,
    rows: list[MatchRowInput] | None,
    upload: Upload | None,
    options: BulkOptions | None,
    add_to_dataset_id: strawberry.ID | None,
    fuzzy_threshold: float,
) -> Any:
    """Stage the rows (given inline or uploaded) and match them; expected failures come
    back as `Rejected`."""
    try:
        return await _match_products(
            info, rows, upload, options, add_to_dataset_id, fuzzy_threshold
        )
    finally:
        # Strawberry hands the file over open (spooled to disk when large); nothing else
        # closes it.
        if isinstance(upload, UploadFile):
            await upload.close()


async def _match_products(
    info: Info,
    rows: list[MatchRowInput] | None,
    upload: Upload | None,
    options: BulkOptions | None,
    add_to_dataset_id: strawberry.ID | None,
    fuzzy_threshold: float,
) -> Any:
    limit = get_operation(matching.OPERATION).thresholds.inline_limit
    try:
        bulk_options = to_options(options)
        if (rows is None) == (upload is None):
            raise InputError(
                "Give exactly one of rows or upload.", code="INVALID_INPUT", field=["rows"]
            )
        params: dict[str, Any] = {"fuzzy_threshold": fuzzy_threshold}
        if add_to_dataset_id is not None:
            params["add_to_dataset_id"] = parse_id(add_to_dataset_id, ["addToDatasetId"])
        if rows is not None:
            source = inline_input([_row_values(r) for r in rows], limit=limit)
        elif isinstance(upload, UploadFile):
            source = await upload_input(upload.file, upload.filename)
        else:
            raise InputError(
                "upload must be a file sent as a multipart request.",
                code="UNSUPPORTED_FORMAT",
                field=["upload"],
            )
        result = await matching.submit_match(
            services(info),
            info.context.tenant,
            source=source,
            params=params,
            options=bulk_options,
        )
    except InputError as exc:
        return rejected(exc)
    if isinstance(result, QueuedResult):
        return payload(result)
    shown: MatchProductsSummary = summary(result.result)
    shown.rows = [to_match_row(r, result.results.products) for r in result.results.rows]
    return shown


def to_match_row(row: ResultRow, products: dict[int, ProductRow]) -> MatchRow:
    def product(product_id: int | None) -> Product | None:
        found = products.get(product_id) if product_id is not None else None
        return Product.from_row(found) if found is not None else None

    candidates = [(product(i), score) for i, score in row.candidates]
    shown = [(p, score) for p, score in candidates if p is not None]
    return MatchRow(
        row=row.row,
        product=product(row.product_id),
        matched_by=row.matched_by,
        score=row.score,
        candidates=[p for p, _ in shown],
        candidate_scores=[score for _, score in shown],
        error=row.error,
    )


async def job_match_results(
    info: Info,
    job_id: str,
    *,
    first: int | None,
    after: str | None,
    matched: bool | None,
    matched_by: str | None,
) -> MatchRowConnection | None:
    size = page_size(first)
    start = int_cursor(after, "row")
    if matched_by is not None and matched_by not in MATCHED_BY:
        raise StrawberryGraphQLError(
            f"Unknown rule {matched_by!r}; expected one of {', '.join(MATCHED_BY)}.",
            extensions={"code": "BAD_USER_INPUT", "field": ["matchedBy"]},
        )
    svc = services(info)
    tenant = info.context.tenant
    input_id = await matching.match_input_of_job(svc, tenant, job_id)
    if input_id is None:
        return None
    found = await matching.read_results(
        svc, tenant, input_id, after=start, limit=size + 1, matched=matched, matched_by=matched_by
    )
    total = await matching.count_results(
        svc, tenant, input_id, matched=matched, matched_by=matched_by
    )
    edges = [
        MatchRowEdge(cursor=encode_cursor("row", r.row), node=to_match_row(r, found.products))
        for r in found.rows[:size]
    ]
    return MatchRowConnection(
        edges=edges,
        page_info=PageInfo.of(edges, has_next=len(found.rows) > size, has_previous=start > 0),
        total_count=total,
    )
