"""Which GraphQL errors are the client's mistakes and which are ours: the first are answered
with their message and logged at INFO, the second masked outside dev mode and logged at
ERROR with their traceback."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from bulkops.errors import BulkopsError

log = logging.getLogger("bulkops.graphql")


def is_client_error(error: GraphQLError) -> bool:
    """Whether `error` comes from what the client sent rather than from a failure here.

    Errors graphql-core raises itself (syntax, validation) have no original error. Before
    execution (no path), an error wrapping another GraphQL error or a ValueError or
    TypeError is a variable that does not coerce: the wrapped message says which and why.
    An error carrying a code was raised on purpose, and so was any `BulkopsError`."""
    original = error.original_error
    if original is None or isinstance(original, BulkopsError):
        return True
    if error.path is None and isinstance(original, GraphQLError | ValueError | TypeError):
        return True
    extensions = getattr(original, "extensions", None) or error.extensions or {}
    return "code" in extensions


def should_mask(error: GraphQLError) -> bool:
    return not is_client_error(error)


class Schema(strawberry.Schema):
    """Strawberry's schema, logging client mistakes at INFO and failures at ERROR, and
    giving a `BulkopsError` that reached GraphQL its code."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            original = error.original_error
            if isinstance(original, BulkopsError) and not (error.extensions or {}).get("code"):
                extensions: dict[str, Any] = {"code": original.code}
                field = getattr(original, "field", None)
                if field:
                    extensions["field"] = field
                error.extensions = extensions
            if is_client_error(error):
                log.info("client error: %s", error.message)
            else:
                log.error("unexpected error: %s", error.message, exc_info=original)
