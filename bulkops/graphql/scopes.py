"""The scope each GraphQL operation needs, checked once for every execution (HTTP and
websocket alike) before any resolver runs: queries and subscriptions need `read`,
mutations `write`, and a root field listed in `FIELD_SCOPES` what it names."""

from __future__ import annotations

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
)

from bulkops.domain import Scope
from bulkops.models import Caller

# What a caller without any scope may still ask: who it is, and the schema.
OPEN_FIELDS = frozenset({"viewer", "__typename", "__schema", "__type"})
# Root fields needing more than their operation type's scope. The shared queue and the
# workers' hosts tell about every tenant's load and the deployment, so not a tenant's admin.
# Webhook endpoints send the tenant's events outside and hold secrets: admin only.
FIELD_SCOPES: dict[str, Scope] = {
    "queueStatus": Scope.OPERATOR,
    "webhookEndpoints": Scope.ADMIN,
    "createWebhookEndpoint": Scope.ADMIN,
    "updateWebhookEndpoint": Scope.ADMIN,
    "rotateWebhookSecret": Scope.ADMIN,
    "deleteWebhookEndpoint": Scope.ADMIN,
    "redeliverWebhook": Scope.ADMIN,
}
_RANK = {scope: rank for rank, scope in enumerate(Scope)}


def _root_fields(
    selection_set: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    seen: set[str] | None = None,
) -> set[str]:
    """Every root field name the operation may select, fragments expanded; `@skip` and
    `@include` are not looked at, so a field is counted even when it would be skipped."""
    seen = set() if seen is None else seen
    names: set[str] = set()
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            names.add(selection.name.value)
        elif isinstance(selection, InlineFragmentNode):
            names |= _root_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in seen:
                seen.add(name)
                names |= _root_fields(fragment.selection_set, fragments, seen)
    return names


def needed_scope(document: DocumentNode, operation: OperationDefinitionNode) -> Scope | None:
    """The scope `operation` needs, or None when it selects only `OPEN_FIELDS`."""
    default = Scope.WRITE if operation.operation == OperationType.MUTATION else Scope.READ
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    needed: Scope | None = None
    for name in _root_fields(operation.selection_set, fragments):
        scope = FIELD_SCOPES.get(name) or (None if name in OPEN_FIELDS else default)
        if scope is not None and (needed is None or _RANK[scope] > _RANK[needed]):
            needed = scope
    return needed


def forbidden(
    document: DocumentNode, operation: OperationDefinitionNode, caller: Caller
) -> GraphQLError | None:
    """The FORBIDDEN error when `caller` lacks the scope `operation` needs, else None."""
    needed = needed_scope(document, operation)
    if needed is None or caller.may(needed):
        return None
    return GraphQLError(
        f"This needs the {needed.value} scope.",
        extensions={"code": "FORBIDDEN", "scope": needed.value},
    )
