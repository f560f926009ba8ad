"""ProductPatch: what updateProducts changes, and the rules a patch must follow."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

# The barcode is a field of its own (Product.barcode), not an identifier row.
RESERVED_IDENTIFIER_KINDS = frozenset({"BARCODE"})
MAX_KIND_LENGTH = 64
MAX_VALUE_LENGTH = 255
# products.price is numeric(12, 2).
MAX_PRICE = Decimal("9999999999.99")
# Fields that are one column each, with the SQL type of their parameter.
COLUMNS = (
    ("name", "text"),
    ("brand", "text"),
    ("category", "text"),
    ("description", "text"),
    ("status", "text"),
    ("price", "numeric"),
)


def _nonblank(value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise PydanticCustomError("BLANK_VALUE", "The value cannot be blank.")
    return stripped


def _kind(value: str) -> str:
    kind = _nonblank(value).upper()
    if len(kind) > MAX_KIND_LENGTH:
        raise PydanticCustomError(
            "INVALID_IDENTIFIER",
            "An identifier kind has at most {n} characters.",
            {"n": MAX_KIND_LENGTH},
        )
    if kind in RESERVED_IDENTIFIER_KINDS:
        raise PydanticCustomError(
            "INVALID_IDENTIFIER",
            "{kind} is the product's barcode field, not an identifier kind; updateProducts "
            "does not change it.",
            {"kind": kind},
        )
    return kind


def _value(value: str) -> str:
    value = _nonblank(value)
    if len(value) > MAX_VALUE_LENGTH:
        raise PydanticCustomError(
            "INVALID_IDENTIFIER",
            "An identifier value has at most {n} characters.",
            {"n": MAX_VALUE_LENGTH},
        )
    return value


Kind = Annotated[str, AfterValidator(_kind)]


class IdentifierValue(BaseModel):
    """One identifier to set: kinds are case-insensitive (stored upper-case), values trimmed."""

    model_config = ConfigDict(frozen=True)

    kind: Kind
    value: Annotated[str, AfterValidator(_value)]


class ProductPatch(BaseModel):
    """What to change. A field left out is kept; `brand`, `category`, `description` and
    `price` given as null are cleared; `attributes` are merged key by key (a key given as
    null is removed)."""

    model_config = ConfigDict(frozen=True)

    name: str | None = None
    brand: str | None = None
    category: str | None = None
    description: str | None = None
    status: Literal["DRAFT", "ACTIVE", "ARCHIVED"] | None = None
    price: Decimal | None = None
    attributes: dict[str, Any] | None = None
    set_identifiers: tuple[IdentifierValue, ...] | None = None
    remove_identifier_kinds: tuple[Kind, ...] | None = None

    @field_validator("name", "status", "attributes", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError("NULL_NOT_ALLOWED", "This field cannot be cleared.")
        return value

    @field_validator("name", "brand", "category", "description")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else _nonblank(value)

    @field_validator("price", mode="before")
    @classmethod
    def _price(cls, value: Any) -> Decimal | None:
        if value is None:
            return None
        try:
            price = Decimal(str(value))
        except InvalidOperation:
            raise PydanticCustomError("INVALID_PRICE", "A price is a decimal number.") from None
        if not price.is_finite() or price < 0 or price > MAX_PRICE:
            raise PydanticCustomError(
                "INVALID_PRICE", "A price is between 0 and {max}.", {"max": str(MAX_PRICE)}
            )
        if price != price.quantize(Decimal("0.01")):
            raise PydanticCustomError("INVALID_PRICE", "A price has at most 2 decimal places.")
        return price

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise PydanticCustomError(
                "INVALID_ATTRIBUTES", "Attributes are a JSON object of keys and values."
            )
        return value

    @field_validator("set_identifiers")
    @classmethod
    def _one_value_per_kind(
        cls, value: tuple[IdentifierValue, ...] | None
    ) -> tuple[IdentifierValue, ...] | None:
        kinds = [i.kind for i in value or ()]
        for kind in kinds:
            if kinds.count(kind) > 1:
                raise PydanticCustomError(
                    "DUPLICATE_IDENTIFIER_KIND",
                    "A product has one identifier of each kind; {kind} is given twice.",
                    {"kind": kind},
                )
        return value

    @field_validator("remove_identifier_kinds")
    @classmethod
    def _not_also_set(
        cls, value: tuple[str, ...] | None, info: ValidationInfo
    ) -> tuple[str, ...] | None:
        setting = {i.kind for i in info.data.get("set_identifiers") or ()}
        both = sorted(setting & set(value or ()))
        if both:
            raise PydanticCustomError(
                "CONFLICTING_IDENTIFIER_KINDS",
                "{kinds} cannot be both set and removed.",
                {"kinds": ", ".join(both)},
            )
        return value

    @model_validator(mode="after")
    def _changes_something(self) -> ProductPatch:
        if not (self.columns or self.attributes or self.identifiers_to_set or self.kinds_to_remove):
            raise PydanticCustomError("PATCH_EMPTY", "The patch changes nothing.")
        return self

    @model_serializer(mode="wrap")
    def _given_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A job stores its parameters as JSON: what was left out must stay left out
        # (and not come back as null, which would clear the field).
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k in self.model_fields_set}

    @property
    def columns(self) -> dict[str, Any]:
        """The one-column fields given, by column name."""
        return {c: getattr(self, c) for c, _ in COLUMNS if c in self.model_fields_set}

    @property
    def identifiers_to_set(self) -> tuple[IdentifierValue, ...]:
        return self.set_identifiers or ()

    @property
    def kinds_to_remove(self) -> list[str]:
        return sorted(set(self.remove_identifier_kinds or ()))
