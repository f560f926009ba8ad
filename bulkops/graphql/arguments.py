"""The arguments the root fields share, each with its description; a field's own
arguments are described where the field is."""

from __future__ import annotations

from typing import Annotated

import strawberry

from bulkops.graphql.enums import JobStatus
from bulkops.graphql.inputs import BulkOptions, ProductFilter, ProductSelection

Selection = Annotated[
    ProductSelection,
    strawberry.argument(
        description="The products: exactly one of ids (up to 1,000,000) or filter ({} is "
        "every product). Rejected codes: INVALID_SELECTION, EMPTY_SELECTION, TOO_MANY_IDS, "
        "INVALID_ID, INVALID_STATUS."
    ),
]
Options = Annotated[
    BulkOptions | None,
    strawberry.argument(
        description="How to run it (default: mode AUTO, no dry run, NORMAL priority, "
        "errorPolicy CONTINUE). Rejected codes: INLINE_LIMIT_EXCEEDED, "
        "INVALID_IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_KEY_IN_USE."
    ),
]
Filter = Annotated[
    ProductFilter | None,
    strawberry.argument(description="Only the products matching every field given (default: all)."),
]
First = Annotated[int | None, strawberry.argument(description="Page size: 0 to 500 (default 50).")]
After = Annotated[
    str | None,
    strawberry.argument(description="The endCursor of the previous page; absent for the first."),
]
ProductId = Annotated[strawberry.ID, strawberry.argument(description="The product's id.")]
DatasetId = Annotated[strawberry.ID, strawberry.argument(description="The dataset's id.")]
JobId = Annotated[strawberry.ID, strawberry.argument(description="The job's id (a UUID).")]
Statuses = Annotated[
    list[JobStatus] | None,
    strawberry.argument(description="Only jobs in one of these statuses (default: any)."),
]
ScheduleId = Annotated[strawberry.ID, strawberry.argument(description="The schedule's id.")]
