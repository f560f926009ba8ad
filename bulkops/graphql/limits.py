"""What a GraphQL request may cost and hold, checked before the costly work.

A query text is bounded in length and in tokens while it is parsed, and in the fields it
selects before it is validated: graphql-core checks that fields sharing a response name
can be merged by comparing them pairwise, so a field selected n times at one level costs
about n² of that work (`query_fields`). Strings anywhere in a request (variables and the
document's literals) may not hold a NUL or a lone surrogate, which Postgres (and UTF-8)
cannot store; JSON variables may nest only so deep, since graphql-core coerces them
recursively."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

from graphql import (
    ArgumentNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSyntaxError,
    InlineFragmentNode,
    ListValueNode,
    ObjectFieldNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValidationRule,
    VariableDefinitionNode,
)
from strawberry.extensions import SchemaExtension

from bulkops.errors import InputError

UNSTORABLE_MESSAGE = "Strings may not hold a NUL character or a lone surrogate."
# Levels of lists and objects inside `variables`; JSON scalars nest far less in practice.
MAX_VARIABLE_DEPTH = 64
# Selections nested in selections, and fragments in fragments, when fields are counted:
# far deeper than any real document (and the depth limit), and well within Python's
# recursion limit.
MAX_NESTING = 100
NOT_FINITE_MESSAGE = "A number must be finite (no NaN or Infinity, nothing past a double's range)."
_SCALARS = frozenset({str, int, float, bool, type(None)})


def unstorable(text: str) -> bool:
    """Whether `text` holds a NUL or a lone surrogate. A Python string holds a surrogate
    only when it stands alone (JSON's "\\ud83d\\ude00" decodes to one code point, "\\ud800"
    to a lone one), and UTF-8 cannot encode it; both checks run at C speed."""
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def check_variables(variables: dict[str, Any], *, max_depth: int = MAX_VARIABLE_DEPTH) -> None:
    """Raise InputError (`BAD_USER_INPUT`, field `["variables", name, ...]`) for a string
    holding a NUL or a lone surrogate (in a value or a key), or for lists and objects nested
    more than `max_depth` levels inside `variables`."""

    def check(value: Any, path: list[str], depth: int) -> None:
        kind = type(value)
        if kind is str:
            if unstorable(value):
                raise InputError(UNSTORABLE_MESSAGE, code="BAD_USER_INPUT", field=path)
            return
        if kind is float:
            if not math.isfinite(value):
                raise InputError(NOT_FINITE_MESSAGE, code="BAD_USER_INPUT", field=path)
            return
        if kind is not dict and kind is not list:
            return
        if depth > max_depth:
            raise InputError(
                f"Variables may nest lists and objects at most {max_depth} levels deep.",
                code="BAD_USER_INPUT",
                field=path[:2],
            )
        if kind is dict and unstorable("".join(value)):
            # The key itself is not named: it could not be written back as UTF-8.
            raise InputError(UNSTORABLE_MESSAGE, code="BAD_USER_INPUT", field=path)
        items = value.values() if kind is dict else value
        # Long lists of ids are the common case: checked in one pass at C speed.
        types = set(map(type, items))
        if types <= _SCALARS:
            if float in types and not all(math.isfinite(v) for v in items if type(v) is float):
                raise InputError(NOT_FINITE_MESSAGE, code="BAD_USER_INPUT", field=path)
            if str not in types:
                return
            strings = items if len(types) == 1 else [v for v in items if type(v) is str]
            if not unstorable("".join(strings)):
                return
        for key, item in value.items() if kind is dict else enumerate(value):
            check(item, [*path, str(key)], depth + 1)

    check(variables, ["variables"], 0)


class StorableStringsRule(ValidationRule):
    """Refuses a string literal holding a NUL or a lone surrogate, naming its argument path
    (`["filter", "search"]`; `["variables", name]` for a variable's default)."""

    def enter_string_value(
        self, node: StringValueNode, _key: Any, parent: Any, path: Any, ancestors: Any
    ) -> None:
        if unstorable(node.value):
            field = _literal_path([*ancestors, parent], path)
            self.report_error(
                GraphQLError(
                    UNSTORABLE_MESSAGE,
                    node,
                    extensions={"code": "BAD_USER_INPUT", "field": field},
                )
            )


def _literal_path(chain: list[Any], keys: list[Any]) -> list[str]:
    # chain[i] holds chain[i + 1] under keys[i]; a list value holds a tuple of items.
    named: list[str] = []
    for index, ancestor in enumerate(chain):
        if isinstance(ancestor, ArgumentNode | ObjectFieldNode):
            named.append(ancestor.name.value)
        elif isinstance(ancestor, VariableDefinitionNode):
            named.extend(["variables", ancestor.variable.name.value])
        elif isinstance(ancestor, ListValueNode):
            named.append(str(keys[index + 1]))
    return named


class _OverLimit(Exception):
    pass


class EmptySelectionSet(Exception):
    """A selection set selects nothing (`{ }`): graphql-core parses it, but nothing can be
    answered for it and Strawberry's depth limiter fails on it."""

    def __init__(self, node: SelectionSetNode) -> None:
        super().__init__()
        self.node = node


class _FieldCount:
    def __init__(self, document: DocumentNode, limit: int) -> None:
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.limit = limit
        self.total = 0
        self.reached: set[str] = set()

    def spend(self, cost: int) -> None:
        self.total += cost
        if self.total > self.limit:
            raise _OverLimit

    def level(self, selection_sets: list[SelectionSetNode], depth: int) -> None:
        """Count the fields of selection sets merged at one level, then the level below."""
        if depth > MAX_NESTING:
            raise _OverLimit
        names: Counter[str] = Counter()
        below: dict[str, list[SelectionSetNode]] = {}
        for selection_set in selection_sets:
            for field in self.fields(selection_set, (), 0):
                name = (field.alias or field.name).value
                names[name] += 1
                if field.selection_set is not None:
                    below.setdefault(name, []).append(field.selection_set)
        for n in names.values():
            self.spend(n * (n + 1) // 2)
        for merged in below.values():
            self.level(merged, depth + 1)

    def fields(
        self, selection_set: SelectionSetNode, within: tuple[str, ...], depth: int
    ) -> Iterator[FieldNode]:
        """The fields of a selection set, its fragments (spread or inline) expanded."""
        if depth > MAX_NESTING:
            raise _OverLimit
        if not selection_set.selections:
            raise EmptySelectionSet(selection_set)
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                yield from self.fields(selection.selection_set, within, depth + 1)
            elif isinstance(selection, FragmentSpreadNode):
                # A spread costs one too: fragments of nothing spread over and over are work.
                self.spend(1)
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in within:
                    continue  # unknown or cyclic: validation reports it
                self.reached.add(name)
                yield from self.fields(fragment.selection_set, (*within, name), depth + 1)


def query_fields(document: DocumentNode, limit: int) -> int | None:
    """The fields `document` selects, fragments expanded where they are spread, or None
    past `limit` (counting stops there) or past `MAX_NESTING` levels of selections or of
    fragments. A response name selected n times at one level counts n(n+1)/2, and each
    fragment spread one. Fragments no operation spreads are counted on their own, since
    validation walks them too. Raises EmptySelectionSet for a `{ }` (within the limit)."""
    count = _FieldCount(document, limit)
    try:
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                count.level([definition.selection_set], 0)
        for name, fragment in count.fragments.items():
            if name not in count.reached:
                count.level([fragment.selection_set], 0)
    except _OverLimit:
        return None
    return count.total


class QueryLimits(SchemaExtension):
    """Bounds a query text before it is parsed (`max_chars`, `max_tokens`: `QUERY_TOO_LARGE`)
    and its fields before it is validated (`max_fields`: `QUERY_TOO_COMPLEX`), and adds
    `StorableStringsRule` to validation. A document taken from the document cache passed
    all of these already."""

    def __init__(self, *, max_chars: int, max_tokens: int, max_fields: int) -> None:
        super().__init__()
        self.max_chars = max_chars
        self.max_tokens = max_tokens
        self.max_fields = max_fields
        self.parsed = False

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        query = context.query
        self.parsed = context.graphql_document is None and query is not None
        if not self.parsed or query is None:
            yield
            return
        too_long = len(query) > self.max_chars
        options = cast(dict[str, Any], context.parse_options)
        options["max_tokens"] = self.max_tokens
        if too_long:
            # Refused before the first token is read.
            options["max_source_length"] = self.max_chars
        yield
        # graphql-core reports its limits as syntax errors; they are reworded and coded in
        # place, since the result already holds them.
        too_many = f"Syntax Error: Document contains more than {self.max_tokens} tokens."
        for error in context.pre_execution_errors or ():
            if isinstance(error, GraphQLSyntaxError) and (
                too_long or error.message.startswith(too_many)
            ):
                error.message = (
                    f"The query is longer than {self.max_chars} characters."
                    if too_long
                    else f"The query has more than {self.max_tokens} tokens."
                )
                error.extensions = {"code": "QUERY_TOO_LARGE"}

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if self.parsed and document is not None and context.pre_execution_errors is None:
            # Errors set here skip graphql-core's validation: the costly part is refused.
            try:
                fields = query_fields(document, self.max_fields)
            except EmptySelectionSet as empty:
                context.pre_execution_errors = [
                    GraphQLError(
                        "A selection set must select at least one field.",
                        empty.node,
                        extensions={"code": "GRAPHQL_VALIDATION_FAILED"},
                    )
                ]
                fields = 0
            if fields is None:
                context.pre_execution_errors = [
                    GraphQLError(
                        f"The query selects more than {self.max_fields} fields (fragments "
                        "expanded, a field repeated at one level counting more), or nests "
                        f"them more than {MAX_NESTING} levels deep.",
                        extensions={"code": "QUERY_TOO_COMPLEX"},
                    )
                ]
            context.validation_rules = (*context.validation_rules, StorableStringsRule)
        yield
