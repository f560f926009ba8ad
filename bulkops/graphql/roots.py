"""The Query, Mutation and Subscription roots: names from the public contract."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.file_uploads import Upload
from strawberry.types.base import get_object_definition

from bulkops.errors import AuthenticationError
from bulkops.graphql.enums import ExportFormat, JobStatus, ProductStatus, RetryScope
from bulkops.graphql.inputs import (
    BulkOptions,
    ImageSelection,
    MatchRowInput,
    ProductFilter,
    ProductPatch,
    ProductSelection,
)
from bulkops.graphql.resolvers import bulk, catalog, export_files, matching
from bulkops.graphql.resolvers import jobs as job_resolvers
from bulkops.graphql.resolvers import queue as queue_resolvers
from bulkops.graphql.types.catalog import Dataset, Product
from bulkops.graphql.types.common import Connection, Info
from bulkops.graphql.types.jobs import Job, OperationInfo
from bulkops.graphql.types.queue import QueueStatus
from bulkops.graphql.types.results import (
    BulkResult,
    CreateDatasetResult,
    JobActionResult,
    RetryJobResult,
    result_type,
    snake,
)
from bulkops.graphql.types.viewer import Viewer
from bulkops.operations import Registry, get_operation
from bulkops.operations.base import NoParams, Operation


@strawberry.type
class Query:
    @strawberry.field
    async def product(self, info: Info, id: strawberry.ID) -> Product | None:
        return await catalog.product(info, id)

    @strawberry.field
    async def products(
        self,
        info: Info,
        filter: ProductFilter | None = None,
        first: int | None = 50,
        after: str | None = None,
    ) -> Connection[Product]:
        return await catalog.products(info, filter, first, after)

    @strawberry.field
    async def dataset(self, info: Info, id: strawberry.ID) -> Dataset | None:
        return await catalog.dataset(info, id)

    @strawberry.field
    async def datasets(
        self, info: Info, first: int | None = 50, after: str | None = None
    ) -> Connection[Dataset]:
        return await catalog.datasets(info, first, after)

    @strawberry.field
    async def job(self, info: Info, id: strawberry.ID) -> Job | None:
        return await job_resolvers.job(info, id)

    @strawberry.field
    async def jobs(
        self,
        info: Info,
        status: list[JobStatus] | None = None,
        operation: str | None = None,
        first: int | None = 50,
        after: str | None = None,
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

    @strawberry.field(description="Waiting and running slices, and the live workers (admin).")
    async def queue_status(self, info: Info) -> QueueStatus:
        return await queue_resolvers.queue_status(info)


@strawberry.type
class Mutation:
    @strawberry.mutation(graphql_type=result_type(get_operation("deleteProducts")))
    async def delete_products(
        self, info: Info, selection: ProductSelection, options: BulkOptions | None = None
    ) -> BulkResult:
        return await bulk.run_bulk(info, "deleteProducts", selection, options)

    @strawberry.mutation(graphql_type=result_type(get_operation("setProductStatus")))
    async def set_product_status(
        self,
        info: Info,
        selection: ProductSelection,
        status: ProductStatus,
        options: BulkOptions | None = None,
    ) -> BulkResult:
        return await bulk.run_bulk(
            info, "setProductStatus", selection, options, params={"status": status.value}
        )

    @strawberry.mutation(graphql_type=result_type(get_operation("addProductsToDataset")))
    async def add_products_to_dataset(
        self,
        info: Info,
        dataset_id: strawberry.ID,
        selection: ProductSelection,
        options: BulkOptions | None = None,
    ) -> BulkResult:
        return await bulk.run_bulk(
            info, "addProductsToDataset", selection, options, param_ids={"dataset_id": dataset_id}
        )

    @strawberry.mutation(graphql_type=result_type(get_operation("removeProductsFromDataset")))
    async def remove_products_from_dataset(
        self,
        info: Info,
        dataset_id: strawberry.ID,
        selection: ProductSelection,
        options: BulkOptions | None = None,
    ) -> BulkResult:
        return await bulk.run_bulk(
            info,
            "removeProductsFromDataset",
            selection,
            options,
            param_ids={"dataset_id": dataset_id},
        )

    @strawberry.mutation(graphql_type=result_type(get_operation("updateProducts")))
    async def update_products(
        self,
        info: Info,
        selection: ProductSelection,
        patch: ProductPatch,
        options: BulkOptions | None = None,
    ) -> BulkResult:
        return await bulk.update_products(info, selection, patch, options)

    @strawberry.mutation(graphql_type=result_type(get_operation("deleteImages")))
    async def delete_images(
        self, info: Info, selection: ImageSelection, options: BulkOptions | None = None
    ) -> BulkResult:
        return await bulk.delete_images(info, selection, options)

    @strawberry.mutation(
        description="Create or update products by SKU from an uploaded CSV (with a header) "
        "or JSONL file. Rows that cannot be imported are errors naming their row and "
        "column; the other rows land.",
        graphql_type=result_type(get_operation("importProducts")),
    )
    async def import_products(
        self, info: Info, upload: Upload, options: BulkOptions | None = None
    ) -> BulkResult:
        return await bulk.import_products(info, upload, options)

    @strawberry.mutation(
        description="Match rows (exactly one of rows, up to 1,000, or an uploaded CSV or "
        "JSONL file) to products: BARCODE, IDENTIFIER, SKU, NAME_BRAND, then FUZZY_NAME "
        "(a name at least fuzzyThreshold similar, same brand). addToDatasetId adds the "
        "matched products to that dataset.",
        graphql_type=result_type(get_operation("matchProducts")),
    )
    async def match_products(
        self,
        info: Info,
        rows: list[MatchRowInput] | None = None,
        upload: Upload | None = None,
        options: BulkOptions | None = None,
        add_to_dataset_id: strawberry.ID | None = None,
        fuzzy_threshold: float = 0.6,
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
        filter: ProductFilter | None = None,
        format: ExportFormat | None = ExportFormat.CSV,
        options: BulkOptions | None = None,
    ) -> BulkResult:
        return await export_files.export_products(info, filter, format or ExportFormat.CSV, options)

    @strawberry.mutation
    async def create_dataset(self, info: Info, name: str) -> CreateDatasetResult:
        return await catalog.create_dataset(info, name)

    @strawberry.mutation(
        description="A queued or paused job ends CANCELLED at once; a running one after its "
        "current batch, keeping what it did."
    )
    async def cancel_job(self, info: Info, id: strawberry.ID) -> JobActionResult:
        return await job_resolvers.cancel_job(info, id)

    @strawberry.mutation(description="Stop after the current batch; resumeJob continues.")
    async def pause_job(self, info: Info, id: strawberry.ID) -> JobActionResult:
        return await job_resolvers.pause_job(info, id)

    @strawberry.mutation(description="Queue a paused job again; it continues from its cursor.")
    async def resume_job(self, info: Info, id: strawberry.ID) -> JobActionResult:
        return await job_resolvers.resume_job(info, id)

    @strawberry.mutation(
        description="A child job (its parent is this job) over the failed items or over all."
    )
    async def retry_job(
        self, info: Info, id: strawberry.ID, scope: RetryScope = RetryScope.FAILED_ITEMS
    ) -> RetryJobResult:
        return await job_resolvers.retry_job(info, id, scope)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Current state first, then every newer version; completes after a "
        "terminal status."
    )
    async def job(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Job, None]:
        async for state in job_resolvers.subscribe_job(info, id):
            yield state

    @strawberry.subscription(description="Every change to any job of the caller's tenant.")
    async def jobs(
        self, info: Info, status: list[JobStatus] | None = None
    ) -> AsyncGenerator[Job, None]:
        async for state in job_resolvers.subscribe_jobs(info, status):
            yield state


def selection_mutation(op: Operation[Any]) -> Any:
    """The root field of an operation that takes nothing but a product selection and the
    options, for an operation with no field written above (`name(selection, options)`)."""

    async def resolve(
        info: Info, selection: ProductSelection, options: BulkOptions | None = None
    ) -> BulkResult:
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
