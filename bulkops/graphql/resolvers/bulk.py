"""The bulk mutations: one resolver shape for every operation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from starlette.datastructures import UploadFile

from bulkops.domain import ExecutionMode
from bulkops.errors import InputError
from bulkops.graphql.chained import resolve_chain
from bulkops.graphql.inputs import BulkOptions, ImageSelection, ProductPatch, ProductSelection
from bulkops.graphql.resolvers.catalog import to_filter
from bulkops.graphql.types.catalog import Product
from bulkops.graphql.types.common import Info
from bulkops.graphql.types.export_files import ResultFile, result_file
from bulkops.graphql.types.jobs import ItemError, Job
from bulkops.graphql.types.matching import MatchRow, to_match_row
from bulkops.graphql.types.results import (
    BulkResult,
    BulkSummary,
    JobQueued,
    Rejected,
    snake,
    summary_type,
)
from bulkops.selection import Selection, build_selection, parse_id
from bulkops.services import images as images_service
from bulkops.services import imports as imports_service
from bulkops.services import matching
from bulkops.services.chains import ChainStep
from bulkops.services.inline import InlineResult
from bulkops.services.options import BulkOptions as RunOptions
from bulkops.services.submit import QueuedResult, submit


async def to_options(info: Info, options: BulkOptions | None, operation: str) -> RunOptions:
    """How a request of `operation` asks to run, its chain's steps checked."""
    if options is None:
        return RunOptions()
    key = options.idempotency_key
    if key is not None and not (1 <= len(key) <= 255):
        raise InputError(
            "An idempotency key has 1 to 255 characters.",
            code="INVALID_IDEMPOTENCY_KEY",
            field=["options", "idempotencyKey"],
        )
    then: tuple[ChainStep, ...] = ()
    if options.then:
        if options.mode == ExecutionMode.INLINE:
            raise InputError(
                "A chain runs as jobs, one step after another; leave mode INLINE out.",
                code="CHAIN_NEEDS_JOB",
                field=["options", "mode"],
            )
        then = await resolve_chain(info, operation, options.then)
    return RunOptions(
        mode=options.mode,
        dry_run=options.dry_run,
        idempotency_key=key,
        priority=options.priority,
        error_policy=options.error_policy,
        then=then,
    )


async def _rows(info: Info, result: InlineResult) -> list[MatchRow]:
    input_id = result.params.get("input_id")
    if result.dry_run or result.aborted or input_id is None:
        return []
    found = await matching.read_results(info.context.services, info.context.tenant, input_id)
    return [to_match_row(r, found.products) for r in found.rows]


async def _result_file(info: Info, result: InlineResult) -> ResultFile | None:
    file_id = result.params.get("file_id")
    if result.dry_run or file_id is None:
        return None
    return await result_file(info, file_id)


# How each summary extra an operation declares is filled in from its run.
EXTRA_VALUES: dict[str, Callable[[Info, InlineResult], Awaitable[Any]]] = {
    "rows": _rows,
    "resultFile": _result_file,
}


async def summary(info: Info, result: InlineResult) -> BulkSummary:
    """The operation's summary type, with its counters and extras."""
    op = info.context.services.operations[result.operation]
    cls = summary_type(op)
    outcome = result.outcome
    extra = {snake(name): outcome.counters.get(name, 0) for name in op.counter_names}
    for name in op.summary_extras:
        extra[snake(name)] = await EXTRA_VALUES[name](info, result)
    shown: BulkSummary = cls(
        matched=result.matched,
        succeeded=outcome.succeeded,
        failed=outcome.failed,
        skipped=outcome.skipped,
        errors=[ItemError.from_failure(e) for e in outcome.errors],
        dry_run=result.dry_run,
        sample=[Product.from_row(r) for r in result.sample],
        **extra,
    )
    return shown


def dataset_param(dataset_id: str) -> int:
    return parse_id(dataset_id, ["datasetId"])


async def run_bulk(
    info: Info,
    operation: str,
    selection: ProductSelection,
    options: BulkOptions | None,
    params: dict[str, Any] | None = None,
    param_ids: dict[str, str] | None = None,
) -> BulkResult:
    """Submit a bulk change; expected failures come back as `Rejected`."""
    settings = info.context.services.settings
    try:
        parsed_params = dict(params or {})
        for name, value in (param_ids or {}).items():
            parsed_params[name] = dataset_param(value)
        sel = build_selection(
            list(selection.ids) if selection.ids is not None else None,
            to_filter(selection.filter, ["selection", "filter"]),
            max_ids=settings.max_ids_per_selection,
        )
        result = await submit(
            info.context.services,
            info.context.tenant,
            operation=operation,
            selection=sel,
            params=parsed_params,
            options=await to_options(info, options, operation),
            created_by=info.context.subject,
        )
    except InputError as exc:
        return rejected(exc)
    return await payload(info, result)


def rejected(exc: InputError) -> Rejected:
    return Rejected(code=exc.code, message=exc.message, field=exc.field or None)


async def payload(info: Info, result: InlineResult | QueuedResult) -> BulkResult:
    """The result union member: the job when queued, else the operation's summary."""
    if isinstance(result, QueuedResult):
        return JobQueued(job=Job.from_state(result.job))
    return await summary(info, result)


def patch_params(patch: ProductPatch) -> dict[str, Any]:
    """updateProducts' parameters: the fields the patch gives (null ones included, since
    null clears a field), and nothing for those left out."""
    given: dict[str, Any] = {}
    for name in ("name", "brand", "category", "description", "price", "attributes"):
        value = getattr(patch, name)
        if value is not strawberry.UNSET:
            given[name] = value
    if patch.status is not strawberry.UNSET:
        given["status"] = patch.status.value if patch.status is not None else None
    if patch.set_identifiers is not strawberry.UNSET:
        given["set_identifiers"] = [
            {"kind": i.kind, "value": i.value} for i in patch.set_identifiers or ()
        ]
    if patch.remove_identifier_kinds is not strawberry.UNSET:
        given["remove_identifier_kinds"] = list(patch.remove_identifier_kinds or ())
    return {"patch": given}


async def update_products(
    info: Info, selection: ProductSelection, patch: ProductPatch, options: BulkOptions | None
) -> BulkResult:
    return await run_bulk(info, "updateProducts", selection, options, params=patch_params(patch))


async def import_products(info: Info, upload: Any, options: BulkOptions | None) -> BulkResult:
    """Stage the uploaded file and import it."""
    if not isinstance(upload, UploadFile):
        return Rejected(
            code="UNSUPPORTED_FORMAT",
            message="Send the file itself, as a multipart request (the GraphQL multipart "
            "request spec).",
            field=["upload"],
        )
    try:
        bulk_options = await to_options(info, options, "importProducts")
        source = await imports_service.upload_input(upload.file, upload.filename)
        result = await submit(
            info.context.services,
            info.context.tenant,
            operation="importProducts",
            selection=source,
            params={},
            options=bulk_options,
            created_by=info.context.subject,
        )
    except InputError as exc:
        return rejected(exc)
    finally:
        # Staged (or refused): its temporary file can go now.
        await upload.close()
    return await payload(info, result)


async def delete_images(
    info: Info, selection: ImageSelection, options: BulkOptions | None
) -> BulkResult:
    settings = info.context.services.settings
    try:
        bulk_options = await to_options(info, options, "deleteImages")
        sel = await image_selection(info, selection, max_ids=settings.max_ids_per_selection)
        result = await submit(
            info.context.services,
            info.context.tenant,
            operation="deleteImages",
            selection=sel,
            params={},
            options=bulk_options,
            created_by=info.context.subject,
        )
    except InputError as exc:
        return rejected(exc)
    return await payload(info, result)


async def image_selection(info: Info, selection: ImageSelection, *, max_ids: int) -> Selection:
    """Check the shape of an image selection (exactly one of ids or products) and resolve
    it to image ids or a product filter."""
    if (selection.ids is None) == (selection.products is None):
        raise InputError(
            "Give exactly one of ids or products.", code="INVALID_SELECTION", field=["selection"]
        )
    if selection.ids is not None:
        return build_selection(list(selection.ids), None, max_ids=max_ids)
    products = selection.products
    assert products is not None
    by_products = build_selection(
        list(products.ids) if products.ids is not None else None,
        to_filter(products.filter, ["selection", "products", "filter"]),
        max_ids=max_ids,
        field=("selection", "products"),
    )
    return await images_service.images_of_products(
        info.context.services.pool, info.context.tenant, by_products, max_ids=max_ids
    )
