"""Relay-style paging arguments."""

from __future__ import annotations

import base64

from strawberry.exceptions import StrawberryGraphQLError

MAX_PAGE = 500


def page_size(first: int | None, default: int = 50) -> int:
    size = default if first is None else first
    if size < 0 or size > MAX_PAGE:
        raise StrawberryGraphQLError(
            f"first must be between 0 and {MAX_PAGE}.",
            extensions={"code": "BAD_USER_INPUT", "field": ["first"]},
        )
    return size


def decode_cursor(cursor: str | None, kind: str) -> str | None:
    """The value inside an opaque cursor made by `encode_cursor`, checked for its kind."""
    if cursor is None:
        return None
    try:
        decoded = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    prefix, _, value = decoded.partition(":")
    if prefix != kind or not value:
        raise StrawberryGraphQLError(
            "The cursor is not valid here.",
            extensions={"code": "BAD_USER_INPUT", "field": ["after"]},
        )
    return value


def int_cursor(cursor: str | None, kind: str) -> int:
    value = decode_cursor(cursor, kind)
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        raise StrawberryGraphQLError(
            "The cursor is not valid here.",
            extensions={"code": "BAD_USER_INPUT", "field": ["after"]},
        ) from None
