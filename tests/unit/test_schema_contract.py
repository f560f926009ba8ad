"""The committed schema.graphql is the public contract; the code must match it."""

from __future__ import annotations

from pathlib import Path

from bulkops.graphql.schema import schema_sdl

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schema_matches_the_code() -> None:
    committed = (ROOT / "schema.graphql").read_text()
    assert schema_sdl() == committed, "schema changed: run `make schema` and commit schema.graphql"


def test_contract_names_from_the_api_guide_exist() -> None:
    sdl = schema_sdl()
    for name in (
        "enum ExecutionMode",
        "enum JobStatus",
        "input ProductSelection",
        "input BulkOptions",
        "union DeleteProductsResult = DeleteProductsSummary | JobQueued | Rejected",
        "interface BulkSummary",
        "type Subscription",
        "deleteProducts(selection: ProductSelection!, options: BulkOptions = null)",
        "cancelJob(id: ID!): JobActionResult!",
    ):
        assert name in sdl, name
