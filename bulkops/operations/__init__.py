"""The registry of bulk operations. Adding one is a module and a line here:
no migration, no switch elsewhere; job rows are checked against this list."""

from __future__ import annotations

from typing import Any

from bulkops.operations.base import Operation
from bulkops.operations.datasets import AddProductsToDataset, RemoveProductsFromDataset
from bulkops.operations.delete_images import DeleteImages
from bulkops.operations.delete_products import DeleteProducts
from bulkops.operations.export_products import ExportProducts
from bulkops.operations.import_products import ImportProducts
from bulkops.operations.match_products import MatchProducts
from bulkops.operations.set_product_status import SetProductStatus
from bulkops.operations.update_products import UpdateProducts

REGISTRY: dict[str, Operation[Any]] = {
    op.name: op
    for op in (
        DeleteProducts(),
        SetProductStatus(),
        AddProductsToDataset(),
        RemoveProductsFromDataset(),
        UpdateProducts(),
        DeleteImages(),
        MatchProducts(),
        ImportProducts(),
        ExportProducts(),
    )
}


def get_operation(name: str) -> Operation[Any]:
    """The registered operation called `name` (KeyError when there is none)."""
    return REGISTRY[name]
