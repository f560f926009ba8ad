"""enrichProducts' instructions: the prompt template, where the answer goes, and the
rules they follow."""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

# The product's own fields a template may name; attributes are named one key at a time.
FIELDS = ("name", "brand", "category", "sku", "description")
ATTRIBUTES_PREFIX = "attributes."
MAX_KEY_LENGTH = 200
MAX_PROMPT_LENGTH = 100_000
MAX_MODEL_LENGTH = 200
# No provider answers more than this in one message today; a larger ask is a typo.
MAX_OUTPUT_TOKENS = 16_384

_FORMATTER = string.Formatter()


def attribute_key(name: str) -> str | None:
    """KEY of `attributes.KEY`, or None when `name` is not of that shape; raises for an
    empty or unusable key."""
    if not name.startswith(ATTRIBUTES_PREFIX):
        return None
    key = name.removeprefix(ATTRIBUTES_PREFIX)
    if not key.strip() or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValueError(
            f"An attribute key is 1 to {MAX_KEY_LENGTH} printable characters, not only spaces."
        )
    return key


@dataclass(frozen=True)
class Template:
    """A prompt with its placeholders: literal text and field names, in order."""

    parts: tuple[tuple[str, str | None], ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        """Raises PydanticCustomError INVALID_TEMPLATE (unbalanced braces, a format spec)
        or UNKNOWN_PLACEHOLDER."""
        try:
            parsed = list(_FORMATTER.parse(text))
        except ValueError:
            raise PydanticCustomError(
                "INVALID_TEMPLATE",
                "The prompt has a lone brace: placeholders are written {name}, and a "
                "literal brace twice ({{ or }}).",
            ) from None
        parts: list[tuple[str, str | None]] = []
        for literal, name, spec, conversion in parsed:
            if name is not None and (spec or conversion):
                raise PydanticCustomError(
                    "INVALID_TEMPLATE",
                    "The placeholder {{placeholder}} has a format or conversion; "
                    "placeholders are only a name, such as {name}.",
                    {"placeholder": name},
                )
            if name is not None:
                _check_placeholder(name)
            parts.append((literal, name))
        return cls(tuple(parts))

    @property
    def fields(self) -> set[str]:
        """The product fields named (of FIELDS)."""
        return {n for _, n in self.parts if n in FIELDS}

    @property
    def attribute_keys(self) -> list[str]:
        """The attribute keys named, each once, in order."""
        keys = [n.removeprefix(ATTRIBUTES_PREFIX) for _, n in self.parts if n and n not in FIELDS]
        return list(dict.fromkeys(keys))

    def fill(self, values: dict[str, Any], attributes: dict[str, Any]) -> str:
        """The prompt for one product: a missing value is left empty; an attribute that
        is not text is written as JSON."""
        out: list[str] = []
        for literal, name in self.parts:
            out.append(literal)
            if name is None:
                continue
            if name in FIELDS:
                value = values.get(name)
            else:
                value = attributes.get(name.removeprefix(ATTRIBUTES_PREFIX))
            if value is None:
                continue
            out.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        return "".join(out)


def _check_placeholder(name: str) -> None:
    if name in FIELDS:
        return
    try:
        key = attribute_key(name)
    except ValueError as exc:
        raise PydanticCustomError(
            "UNKNOWN_PLACEHOLDER",
            "The prompt names {{placeholder}}: {reason}",
            {"placeholder": name, "reason": str(exc)},
        ) from None
    if key is None:
        raise PydanticCustomError(
            "UNKNOWN_PLACEHOLDER",
            "The prompt names {{placeholder}}, which is not one of {name}, {brand}, "
            "{category}, {sku}, {description}, {attributes.KEY} (a literal brace is "
            "written twice: {{ }}).",
            {"placeholder": name},
        )


@dataclass(frozen=True)
class Target:
    """Where the answer goes: a column (description, name) or one attribute key."""

    column: str
    key: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        text = text.strip()
        if text in ("description", "name"):
            return cls(text)
        try:
            key = attribute_key(text)
        except ValueError as exc:
            raise PydanticCustomError("INVALID_TARGET", str(exc)) from None
        if key is None:
            raise PydanticCustomError(
                "INVALID_TARGET",
                "The target is description, name or attributes.KEY, not '{target}'.",
                {"target": text},
            )
        return cls("attributes", key)


class EnrichInstructions(BaseModel):
    """What to ask the provider for each product and where its answer goes."""

    model_config = ConfigDict(frozen=True)

    prompt: str
    target: str
    overwrite: bool = False
    # None: the provider's model from the settings when the call is made.
    model: str | None = None
    max_output_tokens: int = 512

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("EMPTY_PROMPT", "The prompt cannot be empty.")
        if len(value) > MAX_PROMPT_LENGTH:
            raise PydanticCustomError(
                "PROMPT_TOO_LONG",
                "A prompt has at most {n} characters.",
                {"n": MAX_PROMPT_LENGTH},
            )
        Template.parse(value)
        return value

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        Target.parse(value)
        return value.strip()

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or len(value) > MAX_MODEL_LENGTH:
            raise PydanticCustomError(
                "INVALID_MODEL",
                "A model name is 1 to {n} characters.",
                {"n": MAX_MODEL_LENGTH},
            )
        return value

    @field_validator("max_output_tokens")
    @classmethod
    def _max_output_tokens(cls, value: int) -> int:
        if not 1 <= value <= MAX_OUTPUT_TOKENS:
            raise PydanticCustomError(
                "INVALID_MAX_OUTPUT_TOKENS",
                "maxOutputTokens is 1 to {n}.",
                {"n": MAX_OUTPUT_TOKENS},
            )
        return value

    @property
    def template(self) -> Template:
        return Template.parse(self.prompt)

    @property
    def where(self) -> Target:
        return Target.parse(self.target)
