"""matchProducts and the results of a match job."""

from __future__ import annotations

from typing import Any

import strawberry
from starlette.datastructures import UploadFile
from strawberry.file_uploads import Upload

from bulkops.errors import InputError
from bulkops.graphql.inputs import BulkOptions, MatchRowInput
from bulkops.graphql.resolvers.bulk import payload, rejected, to_options
from bulkops.graphql.types.common import Info
from bulkops.graphql.types.results import BulkResult
from bulkops.selection import parse_id
from bulkops.services import matching
from bulkops.services.match_input import inline_input, upload_input
from bulkops.services.submit import submit


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
) -> BulkResult:
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
) -> BulkResult:
    limit = info.context.services.operations["matchProducts"].thresholds.inline_limit
    try:
        bulk_options = await to_options(info, options, "matchProducts")
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
        result = await submit(
            info.context.services,
            info.context.tenant,
            operation="matchProducts",
            selection=matching.StagedMatchInput(source),
            params=params,
            options=bulk_options,
            created_by=info.context.subject,
        )
    except InputError as exc:
        return rejected(exc)
    return await payload(info, result)
