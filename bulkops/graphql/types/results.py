"""What mutations answer: a summary, a queued job, or a refusal (errors as data)."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry

from bulkops.graphql.types.catalog import Dataset, Product
from bulkops.graphql.types.export_files import ResultFile
from bulkops.graphql.types.jobs import ItemError, Job
from bulkops.graphql.types.matching import MatchRow


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
