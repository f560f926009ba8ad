"""exportProducts, and the signed link of an export file."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bulkops.db.export import ExportFormat as FormatName
from bulkops.db.export_files import ExportFileRow
from bulkops.errors import InputError
from bulkops.resolvers.bulk import rejected, services, summary, to_options
from bulkops.resolvers.catalog import to_filter
from bulkops.schema.enums import ExportFormat
from bulkops.schema.inputs import BulkOptions, ProductFilter
from bulkops.schema.types import Info, Job, JobQueued, ResultFile
from bulkops.selection import ProductFilter as FilterModel
from bulkops.selection import build_selection
from bulkops.services import export_jobs
from bulkops.services.bulk import QueuedResult
from bulkops.services.signing import signing_key

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
        result = await export_jobs.submit_export(
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
    link = export_jobs.link(signing_key(info.context.state["settings"]), base, file)
    return ResultFile(
        url=link.url,
        expires_at=link.expires_at,
        rows=file.rows,
        bytes=file.bytes,
        format=ExportFormat(file.format.upper()),
    )


async def result_file(info: Info, file_id: str) -> ResultFile | None:
    """An export job's file; None once it has expired or been removed."""
    file = await export_jobs.file_row(services(info), info.context.tenant, file_id)
    return file_of(info, file) if file is not None else None
