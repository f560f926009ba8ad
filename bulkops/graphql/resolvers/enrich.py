"""enrichProducts: the instructions as the operation's parameters, refused at once when no
AI provider is configured."""

from __future__ import annotations

from bulkops.graphql.inputs import BulkOptions, EnrichInstructions, ProductSelection
from bulkops.graphql.resolvers.bulk import run_bulk
from bulkops.graphql.types.common import Info
from bulkops.graphql.types.results import BulkResult


async def enrich_products(
    info: Info,
    selection: ProductSelection,
    instructions: EnrichInstructions,
    max_total_tokens: int | None,
    options: BulkOptions | None,
) -> BulkResult:
    services = info.context.services
    params = {
        "instructions": {
            "prompt": instructions.prompt,
            "target": instructions.target,
            "overwrite": bool(instructions.overwrite),
            # A job keeps the model it was asked with, whatever the default is later.
            "model": instructions.model or services.settings.llm_model,
            **(
                {"max_output_tokens": instructions.max_output_tokens}
                if instructions.max_output_tokens is not None
                else {}
            ),
        },
        "max_total_tokens": max_total_tokens,
    }
    return await run_bulk(info, "enrichProducts", selection, options, params=params)
