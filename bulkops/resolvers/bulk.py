"""The bulk mutations: one resolver shape for every operation."""

from __future__ import annotations

import re
from typing import Any

from bulkops.errors import InputError
from bulkops.resolvers.catalog import to_filter
from bulkops.schema.inputs import BulkOptions, ProductSelection
from bulkops.schema.types import (
    SUMMARY_TYPES,
    Info,
    ItemError,
    Job,
    JobQueued,
    Product,
    Rejected,
)
from bulkops.selection import build_selection, parse_id
from bulkops.services import bulk as bulk_service


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
        return Rejected(code=exc.code, message=exc.message, field=exc.field or None)
    if isinstance(result, bulk_service.QueuedResult):
        return JobQueued(job=Job.from_state(result.job))
    return summary(result)
