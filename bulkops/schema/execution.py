"""GraphQL execution with a fast path for long lists of ids in variables.

graphql-core coerces a variable element by element in Python (and first walks it to
check its nesting depth): for `$ids: [ID!]!` holding 100,000 strings that is most of a
second, although an `ID!` given as a string coerces to that same string. This execution
context takes such a variable aside before the coercion, lets graphql-core coerce an
empty list in its place (so every other check of the variable still runs), and puts the
list back as it came. A list holding anything other than strings (numbers, nulls,
objects) takes graphql-core's own path, with its errors and conversions."""

from __future__ import annotations

from typing import Any

from graphql import (
    DocumentNode,
    GraphQLSchema,
    ListTypeNode,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    TypeNode,
)
from graphql.execution.values import VariableValues
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# Shorter lists are coerced by graphql-core: the fast path pays off on long ones.
FAST_PATH_MIN_ITEMS = 64


def is_id_list(node: TypeNode) -> bool:
    """Whether a variable's declared type is `[ID!]` or `[ID!]!`."""
    if isinstance(node, NonNullTypeNode):
        node = node.type
    if not isinstance(node, ListTypeNode):
        return False
    item = node.type
    return (
        isinstance(item, NonNullTypeNode)
        and isinstance(item.type, NamedTypeNode)
        and item.type.name.value == "ID"
    )


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    found = None
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            if name is None:
                if found is not None:
                    return None  # graphql-core reports the ambiguity
                found = definition
            elif definition.name is not None and definition.name.value == name:
                return definition
    return found


def string_id_lists(
    document: DocumentNode, operation_name: str | None, raw: dict[str, Any]
) -> dict[str, list[str]]:
    """The variables of the operation declared `[ID!]`/`[ID!]!` whose value is a long
    list of strings only: their coercion would return them unchanged."""
    operation = _operation(document, operation_name)
    if operation is None:
        return {}
    found: dict[str, list[str]] = {}
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        value = raw.get(name)
        if (
            type(value) is list
            and len(value) >= FAST_PATH_MIN_ITEMS
            and is_id_list(definition.type)
            and set(map(type, value)) == {str}
        ):
            found[name] = value
    return found


class ExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, with long string lists of `[ID!]` variables
    passed through as they are (see the module's docstring)."""

    @classmethod
    def build(
        cls,
        schema: GraphQLSchema,
        document: DocumentNode,
        root_value: Any = None,
        context_value: Any = None,
        raw_variable_values: dict[str, Any] | None = None,
        operation_name: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        fast: dict[str, list[str]] = {}
        if raw_variable_values:
            fast = string_id_lists(document, operation_name, raw_variable_values)
            if fast:
                raw_variable_values = {**raw_variable_values, **{name: [] for name in fast}}
        built = super().build(
            schema,
            document,
            root_value,
            context_value,
            raw_variable_values,
            operation_name,
            *args,
            **kwargs,
        )
        if fast and not isinstance(built, list):
            values: VariableValues = built.variable_values
            for name, value in fast.items():
                values.coerced[name] = value
                source = values.sources.get(name)
                if source is not None:
                    values.sources[name] = source._replace(value=value)
        return built
