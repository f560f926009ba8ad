"""matchProducts' rows and what each matched."""

from __future__ import annotations

import strawberry
from strawberry.exceptions import StrawberryGraphQLError

from bulkops.graphql.paging import int_cursor, page_size
from bulkops.graphql.types.catalog import Product
from bulkops.graphql.types.common import Connection, Info, connection, encode_cursor
from bulkops.models import ProductRow, ResultRow
from bulkops.operations.match_products import MATCHED_BY
from bulkops.services import matching
from bulkops.services.match_input import MAX_ROW_NUMBER


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


def to_match_row(row: ResultRow, products: dict[int, ProductRow]) -> MatchRow:
    def product(product_id: int | None) -> Product | None:
        found = products.get(product_id) if product_id is not None else None
        return Product.from_row(found) if found is not None else None

    candidates = [(product(i), score) for i, score in row.candidates]
    shown = [(p, score) for p, score in candidates if p is not None]
    return MatchRow(
        row=row.row,
        product=product(row.product_id),
        matched_by=row.matched_by,
        score=row.score,
        candidates=[p for p, _ in shown],
        candidate_scores=[score for _, score in shown],
        error=row.error,
    )


async def job_match_results(
    info: Info,
    job_id: str,
    *,
    first: int | None,
    after: str | None,
    matched: bool | None,
    matched_by: str | None,
) -> Connection[MatchRow] | None:
    """A matchProducts job's rows, a page at a time; None for another tenant's job."""
    size = page_size(first)
    start = int_cursor(after, "row", maximum=MAX_ROW_NUMBER)
    if matched_by is not None and matched_by not in MATCHED_BY:
        raise StrawberryGraphQLError(
            f"Unknown rule {matched_by!r}; expected one of {', '.join(MATCHED_BY)}.",
            extensions={"code": "BAD_USER_INPUT", "field": ["matchedBy"]},
        )
    svc = info.context.services
    tenant = info.context.tenant
    input_id = await matching.match_input_of_job(svc, tenant, job_id)
    if input_id is None:
        return None
    found = await matching.read_results(
        svc, tenant, input_id, after=start, limit=size + 1, matched=matched, matched_by=matched_by
    )
    total = await matching.count_results(
        svc, tenant, input_id, matched=matched, matched_by=matched_by
    )
    return connection(
        found.rows[:size],
        cursor=lambda r: encode_cursor("row", r.row),
        node=lambda r: to_match_row(r, found.products),
        has_next=len(found.rows) > size,
        has_previous=start > 0,
        total=total,
    )
