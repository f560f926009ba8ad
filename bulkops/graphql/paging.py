"""Relay-style paging arguments: `first`, and the `after` cursors, decoded and checked
here for every connection before anything reaches the database."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import NoReturn

from strawberry.exceptions import StrawberryGraphQLError

from bulkops.selection import MAX_ID, in_utc

MAX_PAGE = 500


def page_size(first: int | None, default: int = 50) -> int:
    size = default if first is None else first
    if size < 0 or size > MAX_PAGE:
        raise StrawberryGraphQLError(
            f"first must be between 0 and {MAX_PAGE}.",
            extensions={"code": "BAD_USER_INPUT", "field": ["first"]},
        )
    return size


def _invalid() -> NoReturn:
    raise StrawberryGraphQLError(
        "The cursor is not valid here.",
        extensions={"code": "BAD_USER_INPUT", "field": ["after"]},
    )


def decode_cursor(cursor: str | None, kind: str) -> str | None:
    """The value inside an opaque cursor made by `encode_cursor`, checked for its kind."""
    if cursor is None:
        return None
    try:
        decoded = base64.urlsafe_b64decode(cursor.encode()).decode()
    except ValueError:
        decoded = ""
    prefix, _, value = decoded.partition(":")
    if prefix != kind or not value:
        _invalid()
    return value


def int_cursor(cursor: str | None, kind: str, *, maximum: int = MAX_ID) -> int:
    """The number inside a cursor of `kind` (0 without one): plain ASCII digits, at most
    `maximum`, the largest value of the column it is compared with (a number past it
    would fail in the database driver, not find nothing)."""
    value = decode_cursor(cursor, kind)
    if value is None:
        return 0
    # int() would also take a sign, spaces, underscores and other scripts' digits.
    if not (value.isascii() and value.isdigit()) or len(value) > len(str(maximum)):
        _invalid()
    number = int(value)
    if number > maximum:
        _invalid()
    return number


def time_id_cursor(cursor: str | None, kind: str) -> tuple[datetime, str] | None:
    """The (instant, UUID) inside a cursor of `kind` written as `<ISO 8601>|<UUID>`, the
    instant in UTC; None without a cursor."""
    value = decode_cursor(cursor, kind)
    if value is None:
        return None
    created, _, row_id = value.rpartition("|")
    try:
        instant = in_utc(datetime.fromisoformat(created))
        parsed_id = str(uuid.UUID(row_id))
    except ValueError:
        instant = None
    if instant is None:
        _invalid()
    return instant, parsed_id
