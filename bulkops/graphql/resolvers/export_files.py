"""exportProducts: the filter's products written to a file, inline or by a job."""

from __future__ import annotations

from bulkops.errors import InputError
from bulkops.graphql.enums import ExportFormat
from bulkops.graphql.inputs import BulkOptions, ProductFilter
from bulkops.graphql.resolvers.bulk import payload, rejected, to_options
from bulkops.graphql.resolvers.catalog import to_filter
from bulkops.graphql.types.common import Info
from bulkops.graphql.types.results import BulkResult
from bulkops.selection import ProductFilter as FilterModel
from bulkops.selection import build_selection
from bulkops.services.submit import submit

_FORMATS = {ExportFormat.CSV: "csv", ExportFormat.JSONL: "jsonl"}


async def export_products(
    info: Info, filter: ProductFilter | None, format: ExportFormat, options: BulkOptions | None
) -> BulkResult:
    """Export inline (small selections) or as a job; both give the file as `resultFile`."""
    settings = info.context.services.settings
    try:
        bulk_options = await to_options(info, options, "exportProducts")
        # The filter is checked as every mutation's is (statuses, ids, the dataset).
        flt = to_filter(filter, ["filter"]) or FilterModel()
        selection = build_selection(None, flt, max_ids=settings.max_ids_per_selection, field=())
        result = await submit(
            info.context.services,
            info.context.tenant,
            operation="exportProducts",
            selection=selection,
            params={"format": _FORMATS[format], "link_seconds": settings.export_link_hours * 3600},
            options=bulk_options,
            created_by=info.context.subject,
        )
    except InputError as exc:
        return rejected(exc)
    return await payload(info, result)
