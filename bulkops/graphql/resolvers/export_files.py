"""exportProducts, and the signed link of an export file."""

from __future__ import annotations

from typing import Any

from bulkops.db.export import ExportFormat as FormatName
from bulkops.errors import InputError
from bulkops.graphql.enums import ExportFormat
from bulkops.graphql.inputs import BulkOptions, ProductFilter
from bulkops.graphql.resolvers.bulk import rejected, services, summary, to_options
from bulkops.graphql.resolvers.catalog import to_filter
from bulkops.graphql.types.common import Info
from bulkops.graphql.types.export_files import file_of
from bulkops.graphql.types.jobs import Job
from bulkops.graphql.types.results import JobQueued
from bulkops.selection import ProductFilter as FilterModel
from bulkops.selection import build_selection
from bulkops.services import export_files
from bulkops.services.bulk import QueuedResult

_FORMATS: dict[ExportFormat, FormatName] = {ExportFormat.CSV: "csv", ExportFormat.JSONL: "jsonl"}


async def export_products(
    info: Info, filter: ProductFilter | None, format: ExportFormat, options: BulkOptions | None
) -> Any:
    """Export inline (small selections) or as a job; both give the file as `resultFile`."""
    settings = info.context.state["settings"]
    try:
        bulk_options = to_options(options)
        # The filter is checked as every mutation's is (statuses, ids, the dataset).
        flt = to_filter(filter, ["filter"]) or FilterModel()
        selection = build_selection(None, flt, max_ids=settings.max_ids_per_selection, field=())
        assert selection.filter is not None
        result = await export_files.submit_export(
            services(info),
            info.context.tenant,
            flt=selection.filter,
            fmt=_FORMATS[format],
            options=bulk_options,
            link_seconds=settings.export_link_hours * 3600,
        )
    except InputError as exc:
        return rejected(exc)
    if isinstance(result, QueuedResult):
        return JobQueued(job=Job.from_state(result.job))
    shown = summary(result.result)
    if result.file is not None:
        shown.result_file = file_of(info, result.file)
    return shown
