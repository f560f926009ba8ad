"""The committed schema.graphql is the public contract; the code must match it."""

from __future__ import annotations

from pathlib import Path

from graphql import GraphQLInputObjectType, build_ast_schema, parse, print_schema

from bulkops.graphql.schema import build_schema, schema_sdl

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schema_matches_the_code() -> None:
    committed = (ROOT / "schema.graphql").read_text()
    assert schema_sdl() == committed, "schema changed: run `make schema` and commit schema.graphql"


def without_descriptions(sdl: str) -> str:
    """The SDL as the API guide writes it: a field's arguments on its line."""
    schema = build_ast_schema(parse(sdl))
    for type_ in schema.type_map.values():
        type_.description = None
        for field in getattr(type_, "fields", {}).values():
            field.description = None
            for arg in getattr(field, "args", {}).values():
                arg.description = None
    return print_schema(schema)


def test_contract_names_from_the_api_guide_exist() -> None:
    sdl = without_descriptions(schema_sdl())
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
        "enrichProducts(selection: ProductSelection!, instructions: EnrichInstructions!, "
        "maxTotalTokens: Int = null, options: BulkOptions = null): EnrichProductsResult!",
        "input EnrichInstructions {\n  prompt: String!\n  target: String!\n  "
        "overwrite: Boolean = false\n  model: String = null\n  maxOutputTokens: Int = 512\n}",
        "union EnrichProductsResult = EnrichProductsSummary | JobQueued | Rejected",
    ):
        assert name in sdl, name


def test_every_root_field_argument_and_input_field_is_described() -> None:
    schema = build_schema(dev=True)._schema
    missing = []
    for root in (schema.query_type, schema.mutation_type, schema.subscription_type):
        assert root is not None
        for name, field in root.fields.items():
            if not field.description:
                missing.append(f"{root.name}.{name}")
            missing += [
                f"{root.name}.{name}({arg})" for arg, a in field.args.items() if not a.description
            ]
    for type_ in schema.type_map.values():
        if isinstance(type_, GraphQLInputObjectType) and not type_.name.startswith("__"):
            missing += [f"{type_.name}.{n}" for n, f in type_.fields.items() if not f.description]
    assert missing == []
