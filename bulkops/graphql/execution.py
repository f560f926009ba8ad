"""GraphQL execution with a fast path for long lists of ids in variables.

graphql-core coerces a variable element by element in Python (and first walks it to
check its nesting depth): for 100,000 ids in `$ids: [ID!]!`, or in the `ids` of a
`$selection: ProductSelection!`, that is most of a second, although an `ID!` given as a
string coerces to that same string. This execution context takes such lists aside before
the coercion, lets graphql-core coerce an empty list in their place (so every other check
of the variable still runs), and puts the lists back as they came. A list holding anything
other than strings (numbers, nulls, objects) takes graphql-core's own path, with its
errors and conversions."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLID,
    GraphQLInputType,
    GraphQLSchema,
    OperationDefinitionNode,
    is_input_object_type,
    is_list_type,
    is_non_null_type,
    type_from_ast,
)
from graphql.execution.values import VariableValues
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from bulkops.errors import InputError
from bulkops.graphql.limits import check_variables
from bulkops.graphql.scopes import forbidden

# Shorter lists are coerced by graphql-core: the fast path pays off on long ones.
FAST_PATH_MIN_ITEMS = 64
# How deep in input objects lists are looked for (ImageSelection.products.ids is at 2).
MAX_DEPTH = 3

Taken = list[tuple[tuple[str, ...], list[str]]]


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


def is_string_id_list(value: Any, type_: GraphQLInputType) -> bool:
    """Whether `value` is a long list of strings given for an `[ID!]` (or `[ID!]!`)."""
    if is_non_null_type(type_):
        type_ = type_.of_type
    if not is_list_type(type_):
        return False
    item = type_.of_type
    return (
        is_non_null_type(item)
        and item.of_type is GraphQLID
        and type(value) is list
        and len(value) >= FAST_PATH_MIN_ITEMS
        and set(map(type, value)) == {str}
    )


def take_id_lists(
    value: Any, type_: GraphQLInputType, path: tuple[str, ...], taken: Taken, depth: int = 0
) -> Any:
    """`value` with its long string lists of `[ID!]` replaced by empty lists (a copy where
    anything is replaced); each taken list goes to `taken` with its coerced path."""
    if is_string_id_list(value, type_):
        taken.append((path, value))
        return []
    if is_non_null_type(type_):
        type_ = type_.of_type
    if not is_input_object_type(type_) or type(value) is not dict or depth >= MAX_DEPTH:
        return value
    copy: dict[str, Any] | None = None
    for name, field in type_.fields.items():
        if name not in value:
            continue
        inner = take_id_lists(
            value[name], field.type, (*path, field.out_name or name), taken, depth + 1
        )
        if inner is not value[name]:
            copy = copy if copy is not None else dict(value)
            copy[name] = inner
    return copy if copy is not None else value


def _put_back(coerced: dict[str, Any], path: tuple[str, ...], value: list[str]) -> None:
    *parents, last = path
    target: Any = coerced
    for key in parents:
        target = target.get(key) if isinstance(target, dict) else None
    if isinstance(target, dict) and last in target:
        target[last] = value


class ExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, refusing an operation the caller has not the scope
    for (`bulkops.graphql.scopes`), with long string lists of `[ID!]` in variables passed
    through as they are (see the module's docstring). Every query, mutation and
    subscription is built here, so this is the one place scopes are checked."""

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
        if raw_variable_values:
            # The HTTP body reader checked these already; a websocket's arrive here first.
            try:
                check_variables(raw_variable_values)
            except InputError as exc:
                return [
                    GraphQLError(exc.message, extensions={"code": exc.code, "field": exc.field})
                ]
        operation = _operation(document, operation_name)
        caller = getattr(context_value, "caller", None)
        if operation is not None and caller is not None:
            refusal = forbidden(document, operation, caller)
            if refusal is not None:
                return [refusal]
        taken: Taken = []
        given = raw_variable_values or {}
        operation = operation if raw_variable_values else None
        if operation is not None and raw_variable_values:
            replaced = dict(raw_variable_values)
            for definition in operation.variable_definitions or ():
                name = definition.variable.name.value
                type_ = type_from_ast(schema, definition.type)
                if name in replaced and type_ is not None:
                    replaced[name] = take_id_lists(replaced[name], type_, (name,), taken)  # type: ignore[arg-type]
            if taken:
                raw_variable_values = replaced
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
        if taken and not isinstance(built, list):
            values: VariableValues = built.variable_values
            for path, ids in taken:
                if len(path) == 1:
                    values.coerced[path[0]] = ids
                else:
                    _put_back(values.coerced, path, ids)
                source = values.sources.get(path[0])
                if source is not None:
                    values.sources[path[0]] = source._replace(value=given[path[0]])
        return built


class DocumentCache:
    """The parsed documents of the query texts that validated cleanly, most recent last.

    Clients send the same few documents over and over (with other variables); parsing and
    validating one costs milliseconds of Python. A document is kept only once it has
    passed validation, with every rule of the schema it belongs to (one cache per schema),
    so a cached document needs neither again. Texts longer than `max_text` are not kept."""

    def __init__(self, size: int = 256, max_text: int = 20_000) -> None:
        self.size = size
        self.max_text = max_text
        self._documents: OrderedDict[str, DocumentNode] = OrderedDict()

    def get(self, query: str | None) -> DocumentNode | None:
        if query is None:
            return None
        document = self._documents.get(query)
        if document is not None:
            self._documents.move_to_end(query)
        return document

    def keep(self, query: str | None, document: DocumentNode | None) -> None:
        if query is None or document is None or len(query) > self.max_text:
            return
        self._documents[query] = document
        if len(self._documents) > self.size:
            self._documents.popitem(last=False)


class CachedDocuments(SchemaExtension):
    """Takes a query text's document from `cache` when it has been validated before
    (skipping parsing and validation), and keeps it after it validates cleanly."""

    def __init__(self, cache: DocumentCache) -> None:
        super().__init__()
        self.cache = cache
        self.hit = False

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        document = self.cache.get(context.query)
        if document is not None:
            context.graphql_document = document
            self.hit = True
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if self.hit:
            context.pre_execution_errors = []
        yield
        if not self.hit and context.pre_execution_errors == []:
            self.cache.keep(context.query, context.graphql_document)
