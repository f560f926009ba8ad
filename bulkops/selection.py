"""What a bulk change applies to: explicit product ids, or a server-side filter."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from bulkops.errors import InputError

PRODUCT_STATUSES = ("DRAFT", "ACTIVE", "ARCHIVED")
# PostgreSQL's bigint, the type of every id.
MAX_ID = 2**63 - 1
_DATE_FIELDS = {"created_after": "createdAfter", "created_before": "createdBefore"}


def in_utc(value: datetime) -> datetime | None:
    """`value` in UTC (one without an offset is taken as UTC), or None when it has no UTC
    equivalent: a time in year 1 or 9999 that its offset moves past the years a datetime
    holds. The database driver converts to UTC to send it, and would fail there."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return None


class ProductFilter(BaseModel):
    """The server-side filter; every field given narrows the selection."""

    model_config = ConfigDict(frozen=True)

    status: tuple[str, ...] | None = None
    brand: tuple[str, ...] | None = None
    category: tuple[str, ...] | None = None
    dataset_id: int | None = None
    sku_prefix: str | None = None
    search: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    @field_validator("created_after", "created_before")
    @classmethod
    def _utc(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        # Every filter passes here, whichever way it came in (GraphQL, the download's
        # query parameters, a job's stored selection). An InputError is not a ValueError:
        # pydantic lets it through as it is, naming the field relative to the filter.
        if value is None:
            return None
        utc = in_utc(value)
        if utc is None:
            name = _DATE_FIELDS[str(info.field_name)]
            raise InputError(
                f"{name}: {value.isoformat()} is out of range (it has no UTC equivalent).",
                code="BAD_USER_INPUT",
                field=[name],
            )
        return utc


@dataclass(frozen=True)
class StagedRows:
    """The rows of an uploaded file, staged under `upload_id` when the request was accepted.
    `digest` (the file's SHA-256) says which file: the same file uploaded again is the same
    request to an idempotency key, wherever it was staged."""

    upload_id: str
    digest: str


@dataclass(frozen=True)
class Selection:
    """Exactly one of `ids` (sorted, unique), `filter`, or `staged`.

    `staged` is for operations whose items are the rows of an uploaded file rather than
    products (importProducts): like a filter, the operation's `count` and `filter_batch`
    say how many there are and walk them in key order, inline and in a job alike."""

    ids: tuple[int, ...] | None = None
    filter: ProductFilter | None = None
    staged: StagedRows | None = None

    def to_json(self) -> dict[str, Any]:
        if self.filter is not None:
            return {"filter": self.filter.model_dump(mode="json")}
        if self.staged is not None:
            return {"staged": asdict(self.staged)}
        return {"ids": True}

    def fingerprint(self) -> dict[str, Any]:
        """What makes two selections the same one, for idempotency keys."""
        if self.ids is not None:
            return {"ids": list(self.ids)}
        if self.staged is not None:
            return {"staged": self.staged.digest}
        return self.to_json()

    @classmethod
    def from_job(cls, data: dict[str, Any]) -> Selection:
        if "filter" in data:
            return cls(filter=ProductFilter.model_validate(data["filter"]))
        if "staged" in data:
            return cls(staged=StagedRows(**data["staged"]))
        return cls(ids=())


def parse_id(value: str, field: list[str]) -> int:
    """A database id from its GraphQL form, or a typed error naming the field."""
    try:
        parsed = int(str(value).strip())
    except ValueError:
        parsed = 0
    if not 0 < parsed <= MAX_ID:
        # Not the whole value back: an id can be any length of text.
        shown = str(value) if len(str(value)) <= 40 else f"{str(value)[:40]}..."
        raise InputError(f"{shown!r} is not a valid id", code="INVALID_ID", field=field)
    return parsed


def _parse_ids(ids: list[str], field: list[str]) -> set[int]:
    """The ids of a list, as a set; a typed error naming the first bad one's index.

    Converted all at once (`int` in C over the list); only a list with a bad id is walked
    again one by one, to name it."""
    try:
        parsed = set(map(int, ids))
    except (TypeError, ValueError):
        parsed = None
    if parsed is not None and min(parsed) > 0 and max(parsed) <= MAX_ID:
        return parsed
    return {parse_id(v, [*field, str(i)]) for i, v in enumerate(ids)}


def build_selection(
    ids: list[str] | None,
    filter: ProductFilter | None,
    *,
    max_ids: int,
    field: tuple[str, ...] = ("selection",),
) -> Selection:
    """Check the selection's shape: exactly one of ids or filter, ids well-formed and bounded."""
    base = list(field)
    if (ids is None) == (filter is None):
        raise InputError("Give exactly one of ids or filter.", code="INVALID_SELECTION", field=base)
    if ids is not None:
        if not ids:
            raise InputError(
                "The selection is empty: give at least one id.",
                code="EMPTY_SELECTION",
                field=[*base, "ids"],
            )
        if len(ids) > max_ids:
            raise InputError(
                f"{len(ids)} ids is more than the {max_ids} a selection may hold; "
                "select by filter instead.",
                code="TOO_MANY_IDS",
                field=[*base, "ids"],
            )
        return Selection(ids=tuple(sorted(_parse_ids(ids, [*base, "ids"]))))
    assert filter is not None
    for status in filter.status or ():
        if status not in PRODUCT_STATUSES:
            raise InputError(
                f"Unknown status {status!r}.",
                code="INVALID_STATUS",
                field=[*base, "filter", "status"],
            )
    return Selection(filter=filter)
