"""The registry of bulk operations. Adding one is its module and a line here (plus a root
field in bulkops/graphql/roots.py if it takes arguments besides a selection): no
migration, no switch elsewhere; job rows are checked against this list.

The API and the workers are given a registry (`create_app(operations=...)`,
`build_worker(operations=...)`); `REGISTRY` is the one they get by default."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from bulkops.operations.base import Operation
from bulkops.operations.datasets import AddProductsToDataset, RemoveProductsFromDataset
from bulkops.operations.delete_images import DeleteImages
from bulkops.operations.delete_products import DeleteProducts
from bulkops.operations.enrich_products import EnrichProducts
from bulkops.operations.export_products import ExportProducts
from bulkops.operations.fetch_product_images import FetchProductImages
from bulkops.operations.import_products import ImportProducts
from bulkops.operations.match_products import MatchProducts
from bulkops.operations.set_product_status import SetProductStatus
from bulkops.operations.update_products import UpdateProducts


class Registry(Mapping[str, "Operation[Any]"]):
    """The operations a process runs, by name, in the order they were given."""

    def __init__(self, operations: Iterable[Operation[Any]]) -> None:
        self._operations = {op.name: op for op in operations}

    def __getitem__(self, name: str) -> Operation[Any]:
        return self._operations[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._operations)

    def __len__(self) -> int:
        return len(self._operations)

    def with_operations(self, *operations: Operation[Any]) -> Registry:
        """This registry with `operations` added (or replacing those of the same name)."""
        return Registry([*self.values(), *operations])


REGISTRY = Registry(
    [
        DeleteProducts(),
        SetProductStatus(),
        AddProductsToDataset(),
        RemoveProductsFromDataset(),
        UpdateProducts(),
        DeleteImages(),
        MatchProducts(),
        ImportProducts(),
        ExportProducts(),
        EnrichProducts(),
        FetchProductImages(),
    ]
)


def get_operation(name: str) -> Operation[Any]:
    """The registered operation called `name` (KeyError when there is none)."""
    return REGISTRY[name]
