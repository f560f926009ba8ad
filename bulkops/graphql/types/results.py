"""What mutations answer: a summary, a queued job, or a refusal (errors as data).

Each operation's summary type and result union are made from the operation itself (its
counters, description and extras), so a new operation needs no type written here."""

from __future__ import annotations

import re
from functools import cache
from typing import Annotated, Any

import strawberry
from strawberry.types.field import StrawberryField

from bulkops.graphql.types.catalog import Dataset, Product
from bulkops.graphql.types.export_files import ResultFile
from bulkops.graphql.types.jobs import ItemError, Job
from bulkops.graphql.types.matching import MatchRow
from bulkops.operations.base import Operation


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


# What a bulk mutation's resolver answers; its GraphQL type is the operation's own union
# (`result_type`), which narrows BulkSummary to the operation's summary.
BulkResult = BulkSummary | JobQueued | Rejected


def _extra_rows() -> tuple[Any, StrawberryField]:
    return list[MatchRow], strawberry.field(
        default_factory=list,
        description="Every row and what it matched, in row order (empty for a dry run).",
    )


def _extra_result_file() -> tuple[Any, StrawberryField]:
    return ResultFile | None, strawberry.field(default=None)


# The summary fields an operation may name in `summary_extras`, beyond its counters.
SUMMARY_EXTRAS = {"rows": _extra_rows, "resultFile": _extra_result_file}


def snake(name: str) -> str:
    """A GraphQL field name as the Python attribute (identifiersSet -> identifiers_set)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def type_name(op: Operation[Any]) -> str:
    """deleteProducts -> DeleteProducts."""
    return op.name[:1].upper() + op.name[1:]


@cache
def summary_type(op: Operation[Any]) -> Any:
    """The operation's summary: BulkSummary, an Int per counter, then its extras."""
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__module__": __name__}
    for counter in op.counters:
        attr = snake(counter.name)
        annotations[attr] = int
        if counter.description is not None:
            namespace[attr] = strawberry.field(description=counter.description)
    for extra in op.summary_extras:
        annotations[snake(extra)], namespace[snake(extra)] = SUMMARY_EXTRAS[extra]()
    namespace["__annotations__"] = annotations
    cls = type(f"{type_name(op)}Summary", (BulkSummary,), namespace)
    return strawberry.type(cls, description=op.summary_description)


@cache
def result_type(op: Operation[Any]) -> Any:
    """The operation's mutation result: its summary, JobQueued or Rejected."""
    name = f"{type_name(op)}Result"
    return Annotated[summary_type(op) | JobQueued | Rejected, strawberry.union(name)]


CreateDatasetResult = Annotated[Dataset | Rejected, strawberry.union("CreateDatasetResult")]
JobActionResult = Annotated[Job | Rejected, strawberry.union("JobActionResult")]
RetryJobResult = Annotated[JobQueued | Rejected, strawberry.union("RetryJobResult")]


@strawberry.type(description="What a delete mutation removed.")
class Deleted:
    id: strawberry.ID = strawberry.field(description="The id of what was removed.")


DeleteResult = Annotated[Deleted | Rejected, strawberry.union("DeleteResult")]
