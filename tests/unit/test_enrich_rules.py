"""enrichProducts' rules that need no server: the prompt template, the target, and how a
Chat Completions answer is read."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from bulkops.operations.enrich_products import EnrichParams, read_answer
from bulkops.operations.enrich_template import Target, Template


def test_a_template_is_filled_from_the_product() -> None:
    template = Template.parse(
        'Describe {name} ({brand}, {category}) as JSON {{"text": ...}}; '
        "size {attributes.size}, tags {attributes.tags}, {attributes.missing}{description}"
    )
    assert template.fields == {"name", "brand", "category", "description"}
    assert template.attribute_keys == ["size", "tags", "missing"]
    filled = template.fill(
        {"name": "Mug", "brand": None, "category": "Cups", "description": None},
        {"size": 42, "tags": ["a", "é"]},
    )
    assert filled == 'Describe Mug (, Cups) as JSON {"text": ...}; size 42, tags ["a", "é"], '


@pytest.mark.parametrize(
    ("prompt", "code", "says"),
    [
        ("", "EMPTY_PROMPT", "empty"),
        ("Price: {price}", "UNKNOWN_PLACEHOLDER", "{price}"),
        ("{attributes.}", "UNKNOWN_PLACEHOLDER", "{attributes.}"),
        ("{Name}", "UNKNOWN_PLACEHOLDER", "{Name}"),
        ("open { only", "INVALID_TEMPLATE", "twice"),
        ("close } only", "INVALID_TEMPLATE", "twice"),
        ("{name:>10}", "INVALID_TEMPLATE", "{name}"),
    ],
)
def test_a_bad_prompt_is_refused_with_its_code(prompt: str, code: str, says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        EnrichParams.model_validate({"instructions": {"prompt": prompt, "target": "name"}})
    error = caught.value.errors()[0]
    assert (error["type"], error["loc"]) == (code, ("instructions", "prompt"))
    assert says in error["msg"]


def test_targets() -> None:
    assert Target.parse(" description ") == Target("description")
    assert Target.parse("name") == Target("name")
    assert Target.parse("attributes.short text") == Target("attributes", "short text")
    for bad in ("price", "Description", "attributes.", "attributes.   ", "attributes.a\nb"):
        with pytest.raises(ValidationError) as caught:
            EnrichParams.model_validate({"instructions": {"prompt": "x", "target": bad}})
        assert caught.value.errors()[0]["type"] == "INVALID_TARGET"


def answer(body: object) -> bytes:
    return json.dumps(body).encode()


def test_an_answer_gives_its_first_text_and_usage() -> None:
    read = read_answer(
        200,
        answer(
            {
                "choices": [{"message": {"content": "  A mug.\n"}}, {"message": {"content": "B"}}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3},
            }
        ),
    )
    assert (read.text, read.tokens_in, read.tokens_out) == ("A mug.", 7, 3)
    parts = {"choices": [{"message": {"content": [{"type": "text", "text": "Hi"}]}}]}
    read = read_answer(200, answer(parts))
    assert (read.text, read.tokens_in, read.tokens_out) == ("Hi", None, None)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>oops</html>", "not JSON"),
        (answer([1, 2]), "not a JSON object"),
        (answer({"choices": []}), "no choices"),
        (answer({"id": "x"}), "no choices"),
        (answer({"choices": [{"message": {"content": "  "}}]}), "empty"),
        (answer({"choices": [{"message": {"content": None}}]}), "empty"),
        (answer({"choices": [{"message": {"content": None, "refusal": "No."}}]}), "refused: No."),
    ],
)
def test_garbage_has_no_text_and_says_why(body: bytes, problem: str) -> None:
    read = read_answer(200, body)
    assert read.text is None
    assert problem in read.problem
