"""Ids in paths."""

from __future__ import annotations

import uuid


def parse_uuid(value: str) -> str | None:
    """`value` as a canonical UUID, or None when it is not one."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None
