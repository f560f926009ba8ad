"""The GraphQL schema: types, inputs and roots."""

from __future__ import annotations

from typing import Any

from strawberry.extensions import MaskErrors, MaxAliasesLimiter, QueryDepthLimiter

from bulkops.graphql.errors import Schema, should_mask
from bulkops.graphql.execution import CachedDocuments, DocumentCache, ExecutionContext
from bulkops.graphql.limits import QueryLimits
from bulkops.graphql.roots import Query, Subscription, mutation_root
from bulkops.graphql.types.results import summary_type
from bulkops.operations import REGISTRY, Registry


def build_schema(
    *,
    dev: bool = False,
    max_depth: int = 12,
    max_aliases: int = 30,
    max_query_chars: int = 100_000,
    max_query_tokens: int = 5_000,
    max_query_fields: int = 5_000,
    operations: Registry = REGISTRY,
) -> Any:
    """The schema of the API serving `operations`, refusing documents past the limits
    (`bulkops.graphql.limits`)."""
    # Factories, so each request gets fresh extension instances.
    documents = DocumentCache()
    extensions: list[Any] = [
        lambda: CachedDocuments(documents),
        # After the cache: a cached document passed the limits when it was kept.
        lambda: QueryLimits(
            max_chars=max_query_chars, max_tokens=max_query_tokens, max_fields=max_query_fields
        ),
        lambda: QueryDepthLimiter(max_depth=max_depth),
        lambda: MaxAliasesLimiter(max_alias_count=max_aliases),
    ]
    if not dev:
        extensions.append(lambda: MaskErrors(should_mask_error=should_mask))
    return Schema(
        query=Query,
        mutation=mutation_root(operations),
        subscription=Subscription,
        # Every operation's summary, the ones no root field names too.
        types=[summary_type(op) for op in operations.values()],
        extensions=extensions,
        execution_context_class=ExecutionContext,
    )


def schema_sdl() -> str:
    """The SDL committed as schema.graphql."""
    return str(build_schema(dev=True).as_str()) + "\n"
