"""GraphQL input types."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry.scalars import JSON

from bulkops.graphql.enums import (
    ChainRunOn,
    ChainSelection,
    ErrorPolicy,
    ExecutionMode,
    Priority,
    ProductStatus,
)


@strawberry.input(description="Products matching every field given; {} matches them all.")
class ProductFilter:
    status: list[ProductStatus] | None = strawberry.field(
        default=None, description="One of these statuses."
    )
    brand: list[str] | None = strawberry.field(
        default=None, description="One of these brands, exactly."
    )
    category: list[str] | None = strawberry.field(
        default=None, description="One of these categories, exactly."
    )
    dataset_id: strawberry.ID | None = strawberry.field(
        default=None, description="In this dataset."
    )
    sku_prefix: str | None = strawberry.field(
        default=None, description="A SKU starting with this, case-sensitive."
    )
    search: str | None = strawberry.field(
        default=None, description="A name containing this, in any case."
    )
    created_after: datetime | None = strawberry.field(
        default=None, description="Created after this moment (exclusive; with a time zone)."
    )
    created_before: datetime | None = strawberry.field(
        default=None, description="Created before this moment (exclusive; with a time zone)."
    )


@strawberry.input(description="Exactly one of ids or filter.")
class ProductSelection:
    ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Product ids, at most 1,000,000 (TOO_MANY_IDS)."
    )
    filter: ProductFilter | None = strawberry.field(
        default=None, description="Every product the filter matches."
    )


@strawberry.input(
    description="A bulk mutation that runs once the step before it ends: its name and its "
    "arguments, as it takes them (without an upload). Checked whole when the chain is "
    "submitted; Rejected codes name the field inside options.then."
)
class ChainStepInput:
    operation: str = strawberry.field(
        description="A bulk mutation's name, e.g. addProductsToDataset (UNKNOWN_OPERATION)."
    )
    arguments: JSON = strawberry.field(
        default_factory=dict,
        description="Its arguments as the mutation takes them, e.g. "
        '{"datasetId": "7"}; without the selection when selectionFrom gives it. '
        "options may set priority and errorPolicy (OPTION_SET_BY_CHAIN for the rest).",
    )
    selection_from: ChainSelection | None = strawberry.field(
        default=None,
        description="Take the selection from the step before: MATCHED (the products a "
        "matchProducts step matched) or SUCCEEDED (the products the step before changed). "
        "Null: the step's own arguments select (INVALID_CHAIN_SELECTION when it does not "
        "fit).",
    )
    run_on: ChainRunOn = strawberry.field(
        default=ChainRunOn.SUCCEEDED,
        description="Run when the step before ended SUCCEEDED (default), or also PARTIAL "
        "(SUCCEEDED_OR_PARTIAL). After FAILED or CANCELLED the chain stops.",
    )


@strawberry.input(description="How a bulk mutation runs.")
class BulkOptions:
    mode: ExecutionMode = strawberry.field(
        default=ExecutionMode.AUTO,
        description="AUTO (default): inline up to the operation's inlineThreshold, else a "
        "job; INLINE: in the request, up to its inlineLimit (INLINE_LIMIT_EXCEEDED); "
        "BACKGROUND: always a job.",
    )
    dry_run: bool = strawberry.field(
        default=False, description="Tell what would change, with a sample; change nothing."
    )
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="1 to 255 characters. The same key with the same request within 24 hours "
        "answers the first answer again; with another request, IDEMPOTENCY_KEY_REUSED; while "
        "the first still runs, IDEMPOTENCY_KEY_IN_USE.",
    )
    priority: Priority = strawberry.field(
        default=Priority.NORMAL,
        description="A job's place in the queue: HIGH first, LOW last (default NORMAL).",
    )
    error_policy: ErrorPolicy = strawberry.field(
        default=ErrorPolicy.CONTINUE,
        description="CONTINUE (default): record failing items and go on (the job ends "
        "PARTIAL); ABORT: stop at the first failing batch, undo that batch, end FAILED.",
    )
    then: list[ChainStepInput] | None = strawberry.field(
        default=None,
        description="Up to 10 more bulk mutations that run one after another, each once "
        "the one before it ends (a chain): this request then always runs as a job, and "
        "Job.next links each step to the one after it. Cancelling a step stops what "
        "follows; retryJob on a failed step goes on with the chain. Rejected codes, with "
        "the field: TOO_MANY_STEPS, CHAIN_NEEDS_JOB (mode INLINE), UNKNOWN_OPERATION, "
        "INVALID_CHAIN_SELECTION, NOT_CHAINABLE, OPTION_SET_BY_CHAIN, and those of the "
        "step's mutation.",
    )


@strawberry.input(description="Exactly one of ids (image ids) or products (every image of them).")
class ImageSelection:
    ids: list[strawberry.ID] | None = strawberry.field(default=None, description="Image ids.")
    products: ProductSelection | None = strawberry.field(
        default=None, description="Every image of these products."
    )


@strawberry.input(
    description="One image to fetch: the product it is added to (productId or sku; both "
    "must then name the same product) and the URL to download it from."
)
class ImageSourceInput:
    product_id: strawberry.ID | None = strawberry.field(
        default=None, description="The product's id (or sku)."
    )
    sku: str | None = strawberry.field(
        default=None, description="The product's SKU (or productId), matched exactly."
    )
    url: str = strawberry.field(
        description="An http or https URL answering a JPEG, PNG, GIF, WebP, AVIF or HEIC "
        "image (told by its bytes)."
    )


@strawberry.input(description="A product identifier, such as an MPN or a GTIN.")
class IdentifierInput:
    kind: str = strawberry.field(description="Its kind, e.g. MPN.")
    value: str = strawberry.field(description="Its value.")


@strawberry.input(
    description="One row to match: a barcode, identifiers, a SKU, or a name (with its "
    "brand). row is its number (default: its position, from 1)."
)
class MatchRowInput:
    row: int | None = strawberry.field(
        default=None, description="The row's number, unique (default: its position, from 1)."
    )
    barcode: str | None = strawberry.field(
        default=None, description="Matched first: a barcode or a GTIN, EAN or UPC identifier."
    )
    sku: str | None = strawberry.field(default=None, description="Matched exactly.")
    name: str | None = strawberry.field(
        default=None, description="Matched with brand, normalized, then by similarity (FUZZY_NAME)."
    )
    brand: str | None = strawberry.field(default=None, description="The name's brand.")
    identifiers: list[IdentifierInput] | None = strawberry.field(
        default=None, description="Matched after the barcode: kind and value equal."
    )


@strawberry.input(
    description="What updateProducts changes. A field left out is kept; brand, category, "
    "description and price given as null are cleared; name, status and attributes cannot "
    "be null."
)
class ProductPatch:
    name: str | None = strawberry.field(default=strawberry.UNSET, description="The new name.")
    brand: str | None = strawberry.field(
        default=strawberry.UNSET, description="The new brand; null clears it."
    )
    category: str | None = strawberry.field(
        default=strawberry.UNSET, description="The new category; null clears it."
    )
    description: str | None = strawberry.field(
        default=strawberry.UNSET, description="The new description; null clears it."
    )
    status: ProductStatus | None = strawberry.field(
        default=strawberry.UNSET, description="The new status."
    )
    price: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description="The new price, 0 or more; null clears it."
    )
    attributes: JSON | None = strawberry.field(
        default=strawberry.UNSET,
        description="merged into the existing attributes (a key given as null is removed)",
    )
    set_identifiers: list[IdentifierInput] | None = strawberry.field(
        default=strawberry.UNSET,
        description="Identifiers to set, replacing the product's value of the same kind.",
    )
    remove_identifier_kinds: list[str] | None = strawberry.field(
        default=strawberry.UNSET, description="Kinds of identifier to remove."
    )


@strawberry.input(
    description="What enrichProducts asks the AI provider for each product, and where the "
    "answer goes."
)
class EnrichInstructions:
    prompt: str = strawberry.field(
        description="Template; {name} {brand} {category} {sku} {description} "
        "{attributes.KEY} are filled in from the product (empty when it has no value); a "
        "literal brace is written twice, {{ or }}. Rejected codes: EMPTY_PROMPT, "
        "UNKNOWN_PLACEHOLDER, INVALID_TEMPLATE, PROMPT_TOO_LONG."
    )
    target: str = strawberry.field(
        description="Where the answer goes: description, name, or attributes.KEY. "
        "Rejected code: INVALID_TARGET."
    )
    overwrite: bool | None = strawberry.field(
        default=False,
        description="Replace a value that is already there (default: skip those products, "
        "counted as skipped).",
    )
    model: str | None = strawberry.field(
        default=None,
        description="The provider's model (default: BULKOPS_LLM_MODEL). Rejected code: "
        "INVALID_MODEL.",
    )
    max_output_tokens: int | None = strawberry.field(
        default=512,
        description="The most tokens an answer may have, 1 to 16384 (default 512). "
        "Rejected code: INVALID_MAX_OUTPUT_TOKENS.",
    )
