"""The bulk mutations: one resolver shape for every operation."""

from __future__ import annotations

import re
from typing import Any

import strawberry
from starlette.datastructures import UploadFile

from bulkops.errors import InputError
from bulkops.graphql.inputs import BulkOptions, ImageSelection, ProductPatch, ProductSelection
from bulkops.graphql.resolvers.catalog import to_filter
from bulkops.graphql.types.catalog import Product
from bulkops.graphql.types.common import Info
from bulkops.graphql.types.jobs import ItemError, Job
from bulkops.graphql.types.results import SUMMARY_TYPES, JobQueued, Rejected
from bulkops.selection import Selection, build_selection, parse_id
from bulkops.services import bulk as bulk_service
from bulkops.services import images as images_service
from bulkops.services import imports as imports_service


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def services(info: Info) -> bulk_service.Services:
    state = info.context.state
    return bulk_service.Services(pool=state["pool"], redis=state["redis"], storage=state["storage"])


def to_options(options: BulkOptions | None) -> bulk_service.BulkOptions:
    if options is None:
        return bulk_service.BulkOptions()
    key = options.idempotency_key
    if key is not None and not (1 <= len(key) <= 255):
        raise InputError(
            "An idempotency key has 1 to 255 characters.",
            code="INVALID_IDEMPOTENCY_KEY",
            field=["options", "idempotencyKey"],
        )
    return bulk_service.BulkOptions(
        mode=options.mode.value,
        dry_run=options.dry_run,
        idempotency_key=key,
        priority=options.priority.value,
        error_policy=options.error_policy.value,
    )


def summary(result: bulk_service.InlineResult) -> Any:
    cls = SUMMARY_TYPES[result.operation]
    outcome = result.outcome
    extra = {_snake(name): outcome.counters.get(name, 0) for name in _counter_names(result)}
    return cls(
        matched=result.matched,
        succeeded=outcome.succeeded,
        failed=outcome.failed,
        skipped=outcome.skipped,
        errors=[ItemError.from_failure(e) for e in outcome.errors],
        dry_run=result.dry_run,
        sample=[Product.from_row(r) for r in result.sample],
        **extra,
    )


def _counter_names(result: bulk_service.InlineResult) -> tuple[str, ...]:
    from bulkops.operations import get_operation

    return get_operation(result.operation).counter_names


def dataset_param(dataset_id: str) -> int:
    return parse_id(dataset_id, ["datasetId"])


async def run_bulk(
    info: Info,
    operation: str,
    selection: ProductSelection,
    options: BulkOptions | None,
    params: dict[str, Any] | None = None,
    param_ids: dict[str, str] | None = None,
) -> Any:
    """Submit a bulk change; expected failures come back as `Rejected`."""
    settings = info.context.state["settings"]
    try:
        parsed_params = dict(params or {})
        for name, value in (param_ids or {}).items():
            parsed_params[name] = dataset_param(value)
        sel = build_selection(
            list(selection.ids) if selection.ids is not None else None,
            to_filter(selection.filter, ["selection", "filter"]),
            max_ids=settings.max_ids_per_selection,
        )
        result = await bulk_service.submit(
            services(info),
            info.context.tenant,
            operation=operation,
            selection=sel,
            params=parsed_params,
            options=to_options(options),
        )
    except InputError as exc:
        return rejected(exc)
    return payload(result)


def rejected(exc: InputError) -> Rejected:
    return Rejected(code=exc.code, message=exc.message, field=exc.field or None)


def payload(result: bulk_service.InlineResult | bulk_service.QueuedResult) -> Any:
    """The result union member: the job when queued, else the operation's summary."""
    if isinstance(result, bulk_service.QueuedResult):
        return JobQueued(job=Job.from_state(result.job))
    return summary(result)


def patch_params(patch: ProductPatch) -> dict[str, Any]:
    """updateProducts' parameters: the fields the patch gives (null ones included, since
    null clears a field), and nothing for those left out."""
    given: dict[str, Any] = {}
    for name in ("name", "brand", "category", "price", "attributes"):
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
) -> Any:
    return await run_bulk(info, "updateProducts", selection, options, params=patch_params(patch))


async def import_products(info: Info, upload: Any, options: BulkOptions | None) -> Any:
    """Stage the uploaded file and import it."""
    if not isinstance(upload, UploadFile):
        return Rejected(
            code="UNSUPPORTED_FORMAT",
            message="Send the file itself, as a multipart request (the GraphQL multipart "
            "request spec).",
            field=["upload"],
        )
    try:
        bulk_options = to_options(options)
        result = await imports_service.import_products(
            services(info),
            info.context.tenant,
            upload.file,
            filename=upload.filename,
            options=bulk_options,
        )
    except InputError as exc:
        return rejected(exc)
    finally:
        # Staged (or refused): its temporary file can go now.
        await upload.close()
    return payload(result)


async def delete_images(info: Info, selection: ImageSelection, options: BulkOptions | None) -> Any:
    settings = info.context.state["settings"]
    try:
        bulk_options = to_options(options)
        sel = await image_selection(info, selection, max_ids=settings.max_ids_per_selection)
        result = await bulk_service.submit(
            services(info),
            info.context.tenant,
            operation="deleteImages",
            selection=sel,
            params={},
            options=bulk_options,
        )
    except InputError as exc:
        return rejected(exc)
    return payload(result)


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
        info.context.state["pool"], info.context.tenant, by_products, max_ids=max_ids
    )
