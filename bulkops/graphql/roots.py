"""The Query, Mutation and Subscription roots: names from the public contract.

Longer than most modules because every field and argument carries its description (what a
client reads in GraphiQL), kept beside the field it documents; the shared arguments are in
`arguments.py`."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Any

import strawberry
from strawberry.file_uploads import Upload
from strawberry.types.base import get_object_definition

from bulkops.errors import AuthenticationError
from bulkops.graphql.arguments import (
    After,
    DatasetId,
    Filter,
    First,
    JobId,
    Options,
    ProductId,
    ScheduleId,
    Selection,
    Statuses,
)
from bulkops.graphql.enums import ExportFormat, ProductStatus, RetryScope
from bulkops.graphql.inputs import (
    EnrichInstructions,
    ImageSelection,
    ImageSourceInput,
    MatchRowInput,
    ProductPatch,
)
from bulkops.graphql.resolvers import bulk, catalog, enrich, export_files, fetch_images, matching
from bulkops.graphql.resolvers import jobs as job_resolvers
from bulkops.graphql.resolvers import queue as queue_resolvers
from bulkops.graphql.resolvers import schedules as schedule_resolvers
from bulkops.graphql.resolvers import webhooks as webhook_resolvers
from bulkops.graphql.types.catalog import Dataset, Product
from bulkops.graphql.types.common import Connection, Info
from bulkops.graphql.types.jobs import Job, OperationInfo
from bulkops.graphql.types.queue import QueueStatus
from bulkops.graphql.types.results import (
    BulkResult,
    CreateDatasetResult,
    DeleteResult,
    JobActionResult,
    RetryJobResult,
    result_type,
    snake,
)
from bulkops.graphql.types.schedules import (
    CreateScheduleResult,
    RunScheduleResult,
    Schedule,
    ScheduleInput,
    ScheduleResult,
)
from bulkops.graphql.types.viewer import Viewer
from bulkops.graphql.types.webhooks import (
    CreateWebhookEndpointResult,
    RedeliverWebhookResult,
    UpdateWebhookEndpointResult,
    WebhookEndpoint,
)
from bulkops.operations import Registry, get_operation
from bulkops.operations.base import NoParams, Operation


@strawberry.type
class Query:
    @strawberry.field(description="One product of the caller's tenant, or null.")
    async def product(self, info: Info, id: ProductId) -> Product | None:
        return await catalog.product(info, id)

    @strawberry.field(description="The tenant's products in id order, a page at a time.")
    async def products(
        self,
        info: Info,
        filter: Filter = None,
        first: First = 50,
        after: After = None,
    ) -> Connection[Product]:
        return await catalog.products(info, filter, first, after)

    @strawberry.field(description="One dataset of the caller's tenant, or null.")
    async def dataset(self, info: Info, id: DatasetId) -> Dataset | None:
        return await catalog.dataset(info, id)

    @strawberry.field(description="The tenant's datasets, a page at a time.")
    async def datasets(
        self, info: Info, first: First = 50, after: After = None
    ) -> Connection[Dataset]:
        return await catalog.datasets(info, first, after)

    @strawberry.field(description="One job of the caller's tenant, or null.")
    async def job(self, info: Info, id: JobId) -> Job | None:
        return await job_resolvers.job(info, id)

    @strawberry.field(description="The tenant's jobs, newest first, a page at a time.")
    async def jobs(
        self,
        info: Info,
        status: Statuses = None,
        operation: Annotated[
            str | None,
            strawberry.argument(
                description="Only jobs of this operation, e.g. deleteProducts (default: any)."
            ),
        ] = None,
        first: First = 50,
        after: After = None,
    ) -> Connection[Job]:
        return await job_resolvers.jobs(info, status, operation, first, after)

    @strawberry.field(description="Who is calling; needs no scope.")
    def viewer(self, info: Info) -> Viewer:
        caller = info.context.caller
        if caller is None:
            raise AuthenticationError
        return Viewer.from_caller(caller)

    @strawberry.field(description="The bulk operations and their thresholds.")
    def operations(self, info: Info) -> list[OperationInfo]:
        return job_resolvers.operations(info)

    @strawberry.field(
        description="The queue every tenant shares: waiting and running slices, and the live "
        "workers (operator scope: a tenant's admin gets FORBIDDEN)."
    )
    async def queue_status(self, info: Info) -> QueueStatus:
        return await queue_resolvers.queue_status(info)

    @strawberry.field(description="The tenant's webhook endpoints, oldest first (admin scope).")
    async def webhook_endpoints(self, info: Info) -> list[WebhookEndpoint]:
        return await webhook_resolvers.webhook_endpoints(info)

    @strawberry.field(description="The tenant's schedules, oldest first.")
    async def schedules(self, info: Info) -> list[Schedule]:
        return await schedule_resolvers.schedules(info)


# Every bulk mutation also answers Rejected with the codes its selection and options name.
@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Delete the selected products with their images, identifiers and "
        "dataset memberships.",
        graphql_type=result_type(get_operation("deleteProducts")),
    )
    async def delete_products(
        self, info: Info, selection: Selection, options: Options = None
    ) -> BulkResult:
        return await bulk.run_bulk(info, "deleteProducts", selection, options)

    @strawberry.mutation(
        description="Set the status of the selected products.",
        graphql_type=result_type(get_operation("setProductStatus")),
    )
    async def set_product_status(
        self,
        info: Info,
        selection: Selection,
        status: Annotated[ProductStatus, strawberry.argument(description="The new status.")],
        options: Options = None,
    ) -> BulkResult:
        return await bulk.run_bulk(
            info, "setProductStatus", selection, options, params={"status": status.value}
        )

    @strawberry.mutation(
        description="Add the selected products to a dataset (those already in it are "
        "skipped). Rejected code: NOT_FOUND (field datasetId); a job whose dataset is "
        "deleted meanwhile fails with DATASET_NOT_FOUND.",
        graphql_type=result_type(get_operation("addProductsToDataset")),
    )
    async def add_products_to_dataset(
        self,
        info: Info,
        dataset_id: DatasetId,
        selection: Selection,
        options: Options = None,
    ) -> BulkResult:
        return await bulk.run_bulk(
            info, "addProductsToDataset", selection, options, param_ids={"dataset_id": dataset_id}
        )

    @strawberry.mutation(
        description="Remove the selected products from a dataset (the products stay). "
        "Rejected code: NOT_FOUND (field datasetId); a job whose dataset is deleted "
        "meanwhile fails with DATASET_NOT_FOUND.",
        graphql_type=result_type(get_operation("removeProductsFromDataset")),
    )
    async def remove_products_from_dataset(
        self,
        info: Info,
        dataset_id: DatasetId,
        selection: Selection,
        options: Options = None,
    ) -> BulkResult:
        return await bulk.run_bulk(
            info,
            "removeProductsFromDataset",
            selection,
            options,
            param_ids={"dataset_id": dataset_id},
        )

    @strawberry.mutation(
        description="Apply one patch to every selected product. Rejected codes, with the "
        "field: PATCH_EMPTY, NULL_NOT_ALLOWED, BLANK_VALUE, INVALID_PRICE.",
        graphql_type=result_type(get_operation("updateProducts")),
    )
    async def update_products(
        self,
        info: Info,
        selection: Selection,
        patch: Annotated[
            ProductPatch, strawberry.argument(description="What changes; fields left out are kept.")
        ],
        options: Options = None,
    ) -> BulkResult:
        return await bulk.update_products(info, selection, patch, options)

    @strawberry.mutation(
        description="Delete the selected images and their stored files.",
        graphql_type=result_type(get_operation("deleteImages")),
    )
    async def delete_images(
        self,
        info: Info,
        selection: Annotated[
            ImageSelection,
            strawberry.argument(
                description="Exactly one of ids (image ids) or products (all their images); "
                "at most 1,000,000 images (TOO_MANY_IDS)."
            ),
        ],
        options: Options = None,
    ) -> BulkResult:
        return await bulk.delete_images(info, selection, options)

    @strawberry.mutation(
        description="Create or update products by SKU from an uploaded CSV (with a header) "
        "or JSONL file. Rows that cannot be imported are errors naming their row and "
        "column; the other rows land. Rejected codes: UNSUPPORTED_FORMAT, EMPTY_UPLOAD, "
        "INVALID_HEADER, UNKNOWN_COLUMN.",
        graphql_type=result_type(get_operation("importProducts")),
    )
    async def import_products(
        self,
        info: Info,
        upload: Annotated[
            Upload,
            strawberry.argument(
                description="The file, as a multipart request part (.csv or .jsonl; send "
                "the header Apollo-Require-Preflight: true)."
            ),
        ],
        options: Options = None,
    ) -> BulkResult:
        return await bulk.import_products(info, upload, options)

    @strawberry.mutation(
        description="Match rows (exactly one of rows, up to 1,000, or an uploaded CSV or "
        "JSONL file) to products: BARCODE, IDENTIFIER, SKU, NAME_BRAND, then FUZZY_NAME "
        "(a name at least fuzzyThreshold similar, same brand). addToDatasetId adds the "
        "matched products to that dataset. Rejected codes: INVALID_INPUT (both or neither "
        "of rows and upload), EMPTY_ROWS, TOO_MANY_ROWS, "
        "INVALID_ROW, DUPLICATE_ROW, INVALID_HEADER, UNSUPPORTED_FORMAT, EMPTY_UPLOAD, "
        "INVALID_THRESHOLD, NOT_FOUND (field addToDatasetId).",
        graphql_type=result_type(get_operation("matchProducts")),
    )
    async def match_products(
        self,
        info: Info,
        rows: Annotated[
            list[MatchRowInput] | None,
            strawberry.argument(description="The rows to match, up to 1,000 (or upload)."),
        ] = None,
        upload: Annotated[
            Upload | None,
            strawberry.argument(
                description="A CSV (with a header) or JSONL file of rows (or rows), as a "
                "multipart request part."
            ),
        ] = None,
        options: Options = None,
        add_to_dataset_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="Add the matched products to this dataset."),
        ] = None,
        fuzzy_threshold: Annotated[
            float,
            strawberry.argument(
                description="The least name similarity a FUZZY_NAME match needs: above 0, "
                "at most 1 (default 0.6)."
            ),
        ] = 0.6,
    ) -> BulkResult:
        return await matching.match_products(
            info, rows, upload, options, add_to_dataset_id, fuzzy_threshold
        )

    @strawberry.mutation(
        description="Write the products the filter selects (all without one) to a CSV or "
        "JSONL file, in id order. Small selections are written inline "
        "(ExportProductsSummary), others by a job; either way the file comes as resultFile, "
        "a signed link that expires (24 hours by default).",
        graphql_type=result_type(get_operation("exportProducts")),
    )
    async def export_products(
        self,
        info: Info,
        filter: Filter = None,
        format: Annotated[
            ExportFormat | None,
            strawberry.argument(description="The file's format (default CSV)."),
        ] = ExportFormat.CSV,
        options: Options = None,
    ) -> BulkResult:
        return await export_files.export_products(info, filter, format or ExportFormat.CSV, options)

    @strawberry.mutation(
        description="Download images into storage and add them to products: exactly one of "
        "sources (up to 1,000) or an uploaded CSV or JSONL file (columns sku or productId, "
        "and url). Each body must be a JPEG, PNG, GIF, WebP, AVIF or HEIC image by its "
        "bytes, within BULKOPS_FETCH_MAX_BYTES; a URL the product already shows is skipped. "
        "404, timeouts, too large, not an image, a private address: item errors. Rejected "
        "codes, with the field: INVALID_INPUT (both or neither of sources and upload), "
        "EMPTY_SOURCES, TOO_MANY_SOURCES, MISSING_PRODUCT, INVALID_ID, MISSING_VALUE, "
        "INVALID_URL, PRIVATE_NETWORK, VALUE_TOO_LONG, UNSUPPORTED_FORMAT, EMPTY_UPLOAD, "
        "INVALID_HEADER.",
        graphql_type=result_type(get_operation("fetchProductImages")),
    )
    async def fetch_product_images(
        self,
        info: Info,
        sources: Annotated[
            list[ImageSourceInput] | None,
            strawberry.argument(description="The images to fetch, up to 1,000 (or upload)."),
        ] = None,
        upload: Annotated[
            Upload | None,
            strawberry.argument(
                description="A CSV (with a header) or JSONL file of sources: sku or "
                "productId, and url (or sources), as a multipart request part."
            ),
        ] = None,
        options: Options = None,
    ) -> BulkResult:
        return await fetch_images.fetch_product_images(info, sources, upload, options)

    @strawberry.mutation(
        description="Ask the AI provider (BULKOPS_LLM_BASE_URL, any OpenAI-compatible Chat "
        "Completions endpoint) for a text per selected product, from a prompt filled from "
        "the product, and write it to its description, name or attributes.KEY. Products "
        "that already have a value there are skipped unless overwrite. Job.usage counts "
        "the calls and tokens. Rejected codes: PROVIDER_NOT_CONFIGURED, EMPTY_PROMPT, "
        "UNKNOWN_PLACEHOLDER, INVALID_TEMPLATE, INVALID_TARGET, INVALID_MODEL, "
        "INVALID_MAX_OUTPUT_TOKENS, INVALID_TOKEN_BUDGET.",
        graphql_type=result_type(get_operation("enrichProducts")),
    )
    async def enrich_products(
        self,
        info: Info,
        selection: Selection,
        instructions: Annotated[
            EnrichInstructions,
            strawberry.argument(description="What to ask for, and where the answer goes."),
        ],
        max_total_tokens: Annotated[
            int | None,
            strawberry.argument(
                description="Stop asking once the run's tokens (in and out, as the provider "
                "counts them) reach this; the products not asked are skipped with the "
                "reason. More than 0 (INVALID_TOKEN_BUDGET); default: no budget."
            ),
        ] = None,
        options: Options = None,
    ) -> BulkResult:
        return await enrich.enrich_products(
            info, selection, instructions, max_total_tokens, options
        )

    @strawberry.mutation(
        description="A new, empty dataset. Rejected codes: INVALID_NAME (empty or over 200 "
        "characters), DUPLICATE_NAME."
    )
    async def create_dataset(
        self,
        info: Info,
        name: Annotated[
            str,
            strawberry.argument(
                description="Its name, unique in the tenant; outer spaces dropped."
            ),
        ],
    ) -> CreateDatasetResult:
        return await catalog.create_dataset(info, name)

    @strawberry.mutation(
        description="A queued or paused job ends CANCELLED at once; a running one after its "
        "current batch, keeping what it did. Rejected codes: INVALID_ID, NOT_FOUND, "
        "JOB_FINISHED."
    )
    async def cancel_job(self, info: Info, id: JobId) -> JobActionResult:
        return await job_resolvers.cancel_job(info, id)

    @strawberry.mutation(
        description="Stop a queued or running job after its current batch; resumeJob "
        "continues. Rejected codes: INVALID_ID, NOT_FOUND, JOB_NOT_PAUSABLE."
    )
    async def pause_job(self, info: Info, id: JobId) -> JobActionResult:
        return await job_resolvers.pause_job(info, id)

    @strawberry.mutation(
        description="Queue a paused job again; it continues from its cursor. Rejected "
        "codes: INVALID_ID, NOT_FOUND, JOB_NOT_PAUSED."
    )
    async def resume_job(self, info: Info, id: JobId) -> JobActionResult:
        return await job_resolvers.resume_job(info, id)

    @strawberry.mutation(
        description="A child job (its parent is this job) over the failed items or over "
        "all. Rejected codes: INVALID_ID, NOT_FOUND, JOB_NOT_FINISHED, NOT_RETRYABLE, "
        "NOTHING_TO_RETRY."
    )
    async def retry_job(
        self,
        info: Info,
        id: JobId,
        scope: Annotated[
            RetryScope,
            strawberry.argument(
                description="FAILED_ITEMS (default): the items that failed; ALL: the whole "
                "selection again."
            ),
        ] = RetryScope.FAILED_ITEMS,
    ) -> RetryJobResult:
        return await job_resolvers.retry_job(info, id, scope)

    @strawberry.mutation(
        description="A new endpoint receiving the tenant's events, and its secret (shown "
        "once). Admin scope. Rejected codes, with the field: INVALID_URL (not https, or "
        "http outside dev mode), PRIVATE_NETWORK, HOST_NOT_FOUND, UNREACHABLE, UNKNOWN_EVENT, "
        "INVALID_DESCRIPTION, TOO_MANY_ENDPOINTS."
    )
    async def create_webhook_endpoint(
        self,
        info: Info,
        url: Annotated[
            str, strawberry.argument(description="Where deliveries are POSTed (https).")
        ],
        events: Annotated[
            list[str] | None,
            strawberry.argument(
                description="The events to deliver (job.queued, job.started, job.paused, "
                "job.succeeded, job.partial, job.failed, job.cancelled, schedule.skipped); "
                "null or empty: every event."
            ),
        ] = None,
        description: Annotated[
            str | None, strawberry.argument(description="What the endpoint is for.")
        ] = None,
    ) -> CreateWebhookEndpointResult:
        return await webhook_resolvers.create_endpoint(info, url, events, description)

    @strawberry.mutation(
        description="Change an endpoint's URL, events or enabled (enabling clears "
        "disabledReason). Admin scope. Rejected codes: NOT_FOUND and those of "
        "createWebhookEndpoint."
    )
    async def update_webhook_endpoint(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The endpoint.")],
        url: Annotated[
            str | None, strawberry.argument(description="A new URL (null: unchanged).")
        ] = None,
        events: Annotated[
            list[str] | None,
            strawberry.argument(
                description="The events to deliver (null: unchanged; empty: every event)."
            ),
        ] = None,
        enabled: Annotated[
            bool | None,
            strawberry.argument(description="Enable or disable it (null: unchanged)."),
        ] = None,
    ) -> UpdateWebhookEndpointResult:
        return await webhook_resolvers.update_endpoint(info, id, url, events, enabled)

    @strawberry.mutation(
        description="A new secret for the endpoint (shown once); the previous one signs "
        "deliveries too for 24 hours, so receivers can switch. Admin scope. Rejected "
        "code: NOT_FOUND."
    )
    async def rotate_webhook_secret(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The endpoint.")],
    ) -> CreateWebhookEndpointResult:
        return await webhook_resolvers.rotate_secret(info, id)

    @strawberry.mutation(
        description="Remove the endpoint and its delivery log. Admin scope. Rejected code: "
        "NOT_FOUND."
    )
    async def delete_webhook_endpoint(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The endpoint.")],
    ) -> DeleteResult:
        return await webhook_resolvers.delete_endpoint(info, id)

    @strawberry.mutation(
        description="Send a delivery's event again now, with the same webhook-id. Admin "
        "scope. Rejected codes: NOT_FOUND, ENDPOINT_DISABLED."
    )
    async def redeliver_webhook(
        self,
        info: Info,
        delivery_id: Annotated[
            strawberry.ID, strawberry.argument(description="The delivery to send again.")
        ],
    ) -> RedeliverWebhookResult:
        return await webhook_resolvers.redeliver(info, delivery_id)

    @strawberry.mutation(
        description="Run a bulk mutation on a cron expression in a time zone. The arguments "
        "are checked now by the mutation itself, and matchedNow counts what they select. "
        "Rejected codes, with the field: INVALID_NAME, INVALID_CRON, UNKNOWN_TIMEZONE, "
        "INVALID_CATCHUP_WINDOW, UNKNOWN_OPERATION, UNKNOWN_ARGUMENT, MISSING_ARGUMENT, "
        "UPLOAD_NOT_SCHEDULABLE, OPTION_SET_BY_SCHEDULE, and any code of the mutation "
        "(its field inside arguments). Nothing is stored when refused."
    )
    async def create_schedule(
        self,
        info: Info,
        input: Annotated[ScheduleInput, strawberry.argument(description="The schedule.")],
    ) -> CreateScheduleResult:
        return await schedule_resolvers.create_schedule(info, input)

    @strawberry.mutation(
        description="Hold the schedule's ticks until resumeSchedule; a running job goes on. "
        "Rejected code: NOT_FOUND."
    )
    async def pause_schedule(self, info: Info, id: ScheduleId) -> ScheduleResult:
        return await schedule_resolvers.pause_schedule(info, id)

    @strawberry.mutation(
        description="Let the schedule's ticks fire again. Of the ticks during the pause only "
        "the latest within the catch-up window fires. Rejected code: NOT_FOUND."
    )
    async def resume_schedule(self, info: Info, id: ScheduleId) -> ScheduleResult:
        return await schedule_resolvers.resume_schedule(info, id)

    @strawberry.mutation(
        description="Queue the schedule's job now, paused or not. The overlap policy holds: "
        "while its previous job runs, SKIP and BUFFER_ONE refuse (SCHEDULE_BUSY), "
        "CANCEL_OTHER cancels that job first, ALLOW runs alongside. Rejected codes: "
        "NOT_FOUND, SCHEDULE_BUSY, and any code of the mutation (its field inside "
        "arguments)."
    )
    async def run_schedule_now(self, info: Info, id: ScheduleId) -> RunScheduleResult:
        return await schedule_resolvers.run_schedule_now(info, id)

    @strawberry.mutation(
        description="Delete the schedule and its ticks; the jobs it made stay. Rejected "
        "code: NOT_FOUND."
    )
    async def delete_schedule(self, info: Info, id: ScheduleId) -> DeleteResult:
        return await schedule_resolvers.delete_schedule(info, id)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Current state first, then every newer version; completes after a "
        "terminal status. An unknown job is an error with code NOT_FOUND."
    )
    async def job(self, info: Info, id: JobId) -> AsyncGenerator[Job, None]:
        async for state in job_resolvers.subscribe_job(info, id):
            yield state

    @strawberry.subscription(
        description="The tenant's unfinished jobs first, then every change to any of its jobs."
    )
    async def jobs(self, info: Info, status: Statuses = None) -> AsyncGenerator[Job, None]:
        async for state in job_resolvers.subscribe_jobs(info, status):
            yield state


def selection_mutation(op: Operation[Any]) -> Any:
    """The root field of an operation that takes nothing but a product selection and the
    options, for an operation with no field written above (`name(selection, options)`)."""

    async def resolve(info: Info, selection: Selection, options: Options = None) -> BulkResult:
        return await bulk.run_bulk(info, op.name, selection, options)

    return strawberry.mutation(
        resolver=resolve, name=op.name, description=op.description, graphql_type=result_type(op)
    )


def mutation_root(operations: Registry) -> type:
    """The Mutation root: the fields above, and one for each other registered operation
    that takes only a selection."""
    written = {f.python_name for f in get_object_definition(Mutation, strict=True).fields}
    added = {
        snake(op.name): selection_mutation(op)
        for op in operations.values()
        if op.params_model is NoParams and snake(op.name) not in written
    }
    if not added:
        return Mutation
    return strawberry.type(type("Mutation", (Mutation,), added))
