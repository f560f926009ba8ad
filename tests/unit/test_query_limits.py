"""How a query document's fields are counted for its limit, and which variables are refused."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import get_introspection_query, parse

from bulkops.errors import InputError
from bulkops.graphql.limits import EmptySelectionSet, check_variables, query_fields


@pytest.mark.parametrize(
    ("document", "count"),
    [
        ("{ a b { c d } }", 4),
        ("{ a a a }", 6),  # 1 + 2 + 3: validation compares each with the ones before
        ("{ b { c } b { c } }", 6),  # b twice (3), then c twice once merged (3)
        ("{ ...F ...F } fragment F on Query { a }", 5),  # two spreads, a twice
        ("{ ... on Query { a } b }", 2),
        ("{ ...F } fragment F on Query { ...F a }", 3),  # the cycle is validation's to report
        ("{ a } fragment Unused on Query { b c }", 3),
    ],
)
def test_fields_are_counted_with_fragments_expanded(document: str, count: int) -> None:
    assert query_fields(parse(document), 1_000) == count


def test_the_introspection_query_is_far_below_the_default() -> None:
    fields = query_fields(parse(get_introspection_query(descriptions=True)), 5_000)
    assert fields is not None
    assert fields < 500


def test_counting_stops_at_the_limit_however_fragments_multiply() -> None:
    fragments = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(60))
    document = parse("{ ...F0 } " + fragments + " fragment F60 on Query { a }")
    assert query_fields(document, 5_000) is None


@pytest.mark.parametrize(
    "document",
    ["{ }", "{ a { } }", "{ ... on Query { } }", "{ a } fragment F on Query { }"],
)
def test_an_empty_selection_set_anywhere_is_found(document: str) -> None:
    with pytest.raises(EmptySelectionSet):
        query_fields(parse(document), 1_000)


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"s": "a\x00"}, ["variables", "s"]),
        ({"f": {"brand": ["ok", "\ud800"]}}, ["variables", "f", "brand", "1"]),
        ({"attrs": {"k\x00": 1}}, ["variables", "attrs"]),
        ({"rows": [{"n": 1, "s": "x"}, {"s": "\udfff"}]}, ["variables", "rows", "1", "s"]),
    ],
)
def test_unstorable_strings_are_refused_by_their_path(
    variables: dict[str, Any], field: list[str]
) -> None:
    with pytest.raises(InputError) as refused:
        check_variables(variables)
    assert (refused.value.code, refused.value.field) == ("BAD_USER_INPUT", field)


def test_an_emoji_is_stored_and_deep_nesting_is_refused() -> None:
    check_variables({"s": "\U0001f600", "ids": [str(i) for i in range(1_000)]})
    deep: Any = "x"
    for _ in range(65):
        deep = [deep]
    with pytest.raises(InputError) as refused:
        check_variables({"v": deep})
    assert refused.value.field == ["variables", "v"]
