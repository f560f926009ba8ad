"""GraphQL object types of the catalog and of jobs."""

from __future__ import annotations

import base64
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, cast

import strawberry
from strawberry.scalars import JSON

from bulkops.models import DatasetRow, ImageRow, ItemFailure, JobState, ProductRow
from bulkops.schema.context import Context
from bulkops.schema.enums import ExportFormat, JobStatus, Priority, ProductStatus

Info = strawberry.Info[Context, None]


def encode_cursor(kind: str, value: str | int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode()


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None

    @classmethod
    def of(cls, edges: list[Any], *, has_next: bool, has_previous: bool) -> PageInfo:
        """The page info of `edges` (objects with a `cursor`)."""
        return cls(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        )


@strawberry.type
class Identifier:
    kind: str
    value: str


@strawberry.type
class Image:
    id: strawberry.ID
    url: str
    content_type: str
    position: int

    @classmethod
    def from_row(cls, row: ImageRow) -> Image:
        return cls(
            id=strawberry.ID(str(row.id)),
            url=f"/files/{row.storage_key}",
            content_type=row.content_type,
            position=row.position,
        )


@strawberry.type
class Dataset:
    id: strawberry.ID
    name: str
    product_count: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: DatasetRow) -> Dataset:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            product_count=row.product_count,
            created_at=row.created_at,
        )


@strawberry.type
class Product:
    id: strawberry.ID
    sku: str
    barcode: str | None
    name: str
    brand: str | None
    category: str | None
    status: ProductStatus
    price: Decimal | None
    attributes: JSON
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: ProductRow) -> Product:
        return cls(
            id=strawberry.ID(str(row.id)),
            sku=row.sku,
            barcode=row.barcode,
            name=row.name,
            brand=row.brand,
            category=row.category,
            status=ProductStatus(row.status),
            price=row.price,
            attributes=cast(JSON, row.attributes),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    @strawberry.field
    async def identifiers(self, info: Info) -> list[Identifier]:
        pairs = await info.context.loaders.identifiers.load(int(self.id))
        return [Identifier(kind=k, value=v) for k, v in pairs]

    @strawberry.field
    async def images(self, info: Info) -> list[Image]:
        return [Image.from_row(r) for r in await info.context.loaders.images.load(int(self.id))]

    @strawberry.field
    async def datasets(self, info: Info) -> list[Dataset]:
        rows = await info.context.loaders.datasets_of_product.load(int(self.id))
        return [Dataset.from_row(r) for r in rows]


@strawberry.type
class ProductEdge:
    cursor: str
    node: Product


@strawberry.type
class ProductConnection:
    edges: list[ProductEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class DatasetEdge:
    cursor: str
    node: Dataset


@strawberry.type
class DatasetConnection:
    edges: list[DatasetEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class ItemError:
    item_id: strawberry.ID | None
    row: int | None
    code: str
    message: str
    column: str | None = strawberry.field(
        default=None,
        description="For a row of an uploaded file: the column the error is in, when it "
        "is one column.",
    )

    @classmethod
    def from_failure(cls, failure: ItemFailure) -> ItemError:
        return cls(
            item_id=strawberry.ID(str(failure.item_id)) if failure.item_id is not None else None,
            row=failure.row,
            code=failure.code,
            message=failure.message,
            column=failure.column,
        )


@strawberry.type
class ItemErrorEdge:
    cursor: str
    node: ItemError


@strawberry.type
class ItemErrorConnection:
    edges: list[ItemErrorEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type(description="One input row of matchProducts and what it matched.")
class MatchRow:
    row: int
    product: Product | None = strawberry.field(
        description="The matched product; null when unmatched (or deleted since)."
    )
    matched_by: str | None = strawberry.field(
        description="The rule that matched: BARCODE, IDENTIFIER, SKU, NAME_BRAND or FUZZY_NAME."
    )
    score: float | None = strawberry.field(
        description="1.0 for an exact rule, the name similarity for FUZZY_NAME."
    )
    candidates: list[Product] = strawberry.field(
        description="For an unmatched row, up to 3 products with the most similar names "
        "(within its brand, or among all products for a row without one), best first."
    )
    candidate_scores: list[float] = strawberry.field(
        description="The similarity of each candidate, in the same order."
    )
    error: str | None = strawberry.field(
        description="Why the row could not be matched on anything (also an item error)."
    )


@strawberry.type
class MatchRowEdge:
    cursor: str
    node: MatchRow


@strawberry.type
class MatchRowConnection:
    edges: list[MatchRowEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type(
    description="A file a job wrote, through a signed link that needs no token and works "
    "until expiresAt; the file is removed after that."
)
class ResultFile:
    url: str
    expires_at: datetime
    rows: int
    bytes: int
    format: ExportFormat


@strawberry.type
class Job:
    id: strawberry.ID
    operation: str
    status: JobStatus
    version: int
    priority: Priority
    total: int
    processed: int
    succeeded: int
    failed: int
    skipped: int
    progress: float
    current_step: str | None
    items_per_second: float | None
    eta_seconds: float | None
    recent_errors: list[ItemError]
    result: JSON | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    parent_id: strawberry.Private[str | None]
    file_id: strawberry.Private[str | None] = None

    @classmethod
    def from_state(cls, state: JobState) -> Job:
        return cls(
            id=strawberry.ID(state.id),
            operation=state.operation,
            status=JobStatus(state.status),
            version=state.version,
            priority=Priority(state.priority),
            total=state.total,
            processed=state.processed,
            succeeded=state.succeeded,
            failed=state.failed,
            skipped=state.skipped,
            progress=state.progress,
            current_step=state.current_step,
            items_per_second=state.items_per_second,
            eta_seconds=state.eta_seconds,
            recent_errors=[ItemError.from_failure(e) for e in state.recent_errors],
            result=cast(JSON | None, state.result),
            created_at=state.created_at,
            started_at=state.started_at,
            finished_at=state.finished_at,
            parent_id=state.parent_id,
            file_id=state.params.get("file_id") if state.operation == "exportProducts" else None,
        )

    @strawberry.field
    async def errors(
        self, info: Info, first: int | None = 50, after: str | None = None
    ) -> ItemErrorConnection:
        from bulkops.resolvers.jobs import job_errors

        return await job_errors(info, str(self.id), first=first, after=after)

    @strawberry.field(
        description="1 for the tenant's next job to start, and so on; null unless QUEUED."
    )
    async def queue_position(self, info: Info) -> int | None:
        if self.status is not JobStatus.QUEUED:
            return None
        from bulkops.resolvers.jobs import queue_position

        return await queue_position(info, str(self.id))

    @strawberry.field(
        description="A matchProducts job's rows and what each matched, in row order "
        "(rows processed so far while it runs); null for other operations. `matched` "
        "keeps matched (true) or other (false) rows; `matchedBy` one rule's matches."
    )
    async def match_results(
        self,
        info: Info,
        first: int | None = 50,
        after: str | None = None,
        matched: bool | None = None,
        matched_by: str | None = None,
    ) -> MatchRowConnection | None:
        if self.operation != "matchProducts":
            return None
        from bulkops.resolvers.matching import job_match_results

        return await job_match_results(
            info, str(self.id), first=first, after=after, matched=matched, matched_by=matched_by
        )

    @strawberry.field(
        description="An exportProducts job's file, once it has SUCCEEDED and until its "
        "link expires; null otherwise and for other operations."
    )
    async def result_file(self, info: Info) -> ResultFile | None:
        if self.file_id is None or self.status not in (JobStatus.SUCCEEDED, JobStatus.PARTIAL):
            return None
        from bulkops.resolvers.exports import result_file

        return await result_file(info, self.file_id)

    @strawberry.field
    async def parent(self, info: Info) -> Job | None:
        if self.parent_id is None:
            return None
        state = await info.context.loaders.jobs.load(self.parent_id)
        return Job.from_state(state) if state else None


@strawberry.type
class JobEdge:
    cursor: str
    node: Job


@strawberry.type
class JobConnection:
    edges: list[JobEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class OperationInfo:
    name: str
    description: str
    inline_threshold: int
    inline_limit: int
    batch_size: int


@strawberry.type(description="The request was refused; nothing changed.")
class Rejected:
    code: str
    message: str
    field: list[str] | None


@strawberry.type
class JobQueued:
    job: Job


@strawberry.interface
class BulkSummary:
    matched: int
    succeeded: int
    failed: int
    skipped: int
    errors: list[ItemError]
    dry_run: bool
    sample: list[Product] = strawberry.field(
        description="Up to 10 of the products changed (or, in a dry run, that would be)."
    )


@strawberry.type
class DeleteProductsSummary(BulkSummary):
    deleted_images: int
    removed_from_datasets: int


@strawberry.type
class SetProductStatusSummary(BulkSummary):
    pass


@strawberry.type
class AddProductsToDatasetSummary(BulkSummary):
    pass


@strawberry.type
class RemoveProductsFromDatasetSummary(BulkSummary):
    pass


@strawberry.type
class UpdateProductsSummary(BulkSummary):
    identifiers_set: int = strawberry.field(
        description="Identifiers added or given a new value (unchanged ones are not counted)."
    )
    identifiers_removed: int


@strawberry.type(
    description="Items are images: matched, succeeded and skipped count images; sample "
    "shows the products that lose them."
)
class DeleteImagesSummary(BulkSummary):
    deleted_files: int = strawberry.field(
        description="Stored files that existed when their batch ran; removed after it "
        "committed (or, in a dry run, that would be)."
    )
    missing_files: int = strawberry.field(
        description="Stored files already gone when their batch ran (not an error)."
    )


@strawberry.type(
    description="Items are input rows: matched counts rows, succeeded the matched ones, "
    "skipped the unmatched ones and failed those with nothing to match on; sample shows "
    "matched products."
)
class MatchProductsSummary(BulkSummary):
    matched_rows: int
    unmatched_rows: int
    added_to_dataset: int = strawberry.field(
        description="Matched products added to addToDatasetId (those already in it are "
        "not counted)."
    )
    rows: list[MatchRow] = strawberry.field(
        default_factory=list,
        description="Every row and what it matched, in row order (empty for a dry run).",
    )


DeleteProductsResult = Annotated[
    DeleteProductsSummary | JobQueued | Rejected, strawberry.union("DeleteProductsResult")
]
SetProductStatusResult = Annotated[
    SetProductStatusSummary | JobQueued | Rejected, strawberry.union("SetProductStatusResult")
]
AddProductsToDatasetResult = Annotated[
    AddProductsToDatasetSummary | JobQueued | Rejected,
    strawberry.union("AddProductsToDatasetResult"),
]
RemoveProductsFromDatasetResult = Annotated[
    RemoveProductsFromDatasetSummary | JobQueued | Rejected,
    strawberry.union("RemoveProductsFromDatasetResult"),
]
UpdateProductsResult = Annotated[
    UpdateProductsSummary | JobQueued | Rejected, strawberry.union("UpdateProductsResult")
]
DeleteImagesResult = Annotated[
    DeleteImagesSummary | JobQueued | Rejected, strawberry.union("DeleteImagesResult")
]


@strawberry.type(
    description="Items are the file's rows: matched counts them, succeeded the products "
    "created or changed, skipped the rows that would change nothing, failed the rows that "
    "cannot be imported (errors name their row and column). A dry run's sample shows only "
    "existing products."
)
class ImportProductsSummary(BulkSummary):
    created: int
    updated: int


@strawberry.type(
    description="Items are products: matched counts the selection, succeeded the rows "
    "written, skipped products deleted while the file was written. A dry run writes no "
    "file."
)
class ExportProductsSummary(BulkSummary):
    result_file: ResultFile | None = None


ExportProductsResult = Annotated[
    ExportProductsSummary | JobQueued | Rejected, strawberry.union("ExportProductsResult")
]
ImportProductsResult = Annotated[
    ImportProductsSummary | JobQueued | Rejected, strawberry.union("ImportProductsResult")
]
MatchProductsResult = Annotated[
    MatchProductsSummary | JobQueued | Rejected, strawberry.union("MatchProductsResult")
]
CreateDatasetResult = Annotated[Dataset | Rejected, strawberry.union("CreateDatasetResult")]
JobActionResult = Annotated[Job | Rejected, strawberry.union("JobActionResult")]
RetryJobResult = Annotated[JobQueued | Rejected, strawberry.union("RetryJobResult")]

SUMMARY_TYPES: dict[str, Any] = {
    "deleteProducts": DeleteProductsSummary,
    "setProductStatus": SetProductStatusSummary,
    "addProductsToDataset": AddProductsToDatasetSummary,
    "removeProductsFromDataset": RemoveProductsFromDatasetSummary,
    "updateProducts": UpdateProductsSummary,
    "deleteImages": DeleteImagesSummary,
    "matchProducts": MatchProductsSummary,
    "importProducts": ImportProductsSummary,
    "exportProducts": ExportProductsSummary,
}
